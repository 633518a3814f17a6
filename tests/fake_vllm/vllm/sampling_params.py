class StructuredOutputsParams:
    def __init__(self, json=None, **kwargs):
        self.json = json


class SamplingParams:
    def __init__(self, structured_outputs=None, **kwargs):
        self.structured_outputs = structured_outputs
        self.kwargs = kwargs
