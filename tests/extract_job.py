"""Extract N documents through the openai backend into a store: run in a subprocess by tests/test_faults.py, which
kills it mid-way. Usage: python extract_job.py BASE_URL STORE N MAX_IN_FLIGHT"""

import sys

from equal_dagster.core.extraction import Document, ExtractionConfig, StoreResponseCache, build_extractor
from equal_dagster.core.store import Store

if __name__ == "__main__":
    base_url, store_path, n, in_flight = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    config = ExtractionConfig(backend="openai", base_url=base_url, model="fake-model", max_in_flight=in_flight,
                              max_retries=0)
    with Store.open(store_path) as store:
        run = build_extractor(config, StoreResponseCache(store)).extract(
            [Document(f"doc-{i}", f"DOC=d{i} MODE=good\\nProblem {i}.") for i in range(n)])
    print("DONE", run.totals()["backend_calls"], flush=True)
