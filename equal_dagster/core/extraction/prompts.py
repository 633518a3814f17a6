"""Versioned prompt files: ``prompts/<name>.v<version>.yaml`` in the package, or in a folder of the user's.

A prompt file holds ``name``, ``version``, ``output`` (the response schema, see :mod:`.parsing`), ``system`` and
``user`` templates. Templates name their inputs as ``{{placeholder}}``. Rendering substitutes every placeholder in
one pass over the template, so text inside a document (braces, placeholders, anything) is never interpreted;
closing tags of the blocks the prompts use are neutralized inside values, so a document cannot end its own
block and pose as the prompt. The version string (``name/vN``) is recorded with every extraction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from equal_dagster.core.extraction.parsing import SCHEMAS

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
BLOCK_TAGS = ("document", "qa_pairs", "response", "instruction", "web_text")
_CLOSING_TAG = re.compile(r"</\s*(" + "|".join(BLOCK_TAGS) + r")\s*>", re.IGNORECASE)
_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_-]*)\.v(?P<version>\d+)\.yaml$")


class PromptError(ValueError):
    """A prompt file that is missing or malformed, or a render without a value the template needs."""


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    output: str
    system: str
    user: str
    description: str = ""

    @property
    def version_id(self) -> str:
        return f"{self.name}/v{self.version}"

    @property
    def placeholders(self) -> set[str]:
        return set(PLACEHOLDER.findall(self.system)) | set(PLACEHOLDER.findall(self.user))

    def render(self, **values: str) -> list[dict[str, str]]:
        """Chat messages (system, user) with the placeholders filled in."""
        missing = self.placeholders - set(values)
        if missing:
            raise PromptError(f"prompt {self.version_id} needs {', '.join(sorted(missing))}")
        safe = {key: _CLOSING_TAG.sub(lambda m: f"<\\/{m.group(1)}>", value) for key, value in values.items()}

        def fill(template: str) -> str:
            return PLACEHOLDER.sub(lambda m: safe[m.group(1)], template).strip()

        return [{"role": "system", "content": fill(self.system)}, {"role": "user", "content": fill(self.user)}]


def _parse_prompt(text: str, where: str) -> Prompt:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PromptError(f"{where}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise PromptError(f"{where}: expected a mapping with name, version, output, system, user")
    missing = [k for k in ("name", "version", "output", "system", "user") if k not in data]
    if missing:
        raise PromptError(f"{where}: missing {', '.join(missing)}")
    if data["output"] not in SCHEMAS:
        raise PromptError(f"{where}: output {data['output']!r} is not one of {', '.join(SCHEMAS)}")
    return Prompt(
        name=str(data["name"]),
        version=int(data["version"]),
        output=str(data["output"]),
        system=str(data["system"]),
        user=str(data["user"]),
        description=str(data.get("description", "")),
    )


def _candidates(prompt_dir: Path | None) -> dict[tuple[str, int], tuple[str, str]]:
    found: dict[tuple[str, int], tuple[str, str]] = {}
    for entry in resources.files("equal_dagster.core.extraction").joinpath("prompts").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found[(match["name"], int(match["version"]))] = (entry.read_text(encoding="utf-8"), f"package prompt {entry.name}")
    if prompt_dir is not None:
        if not Path(prompt_dir).is_dir():
            raise PromptError(f"prompt folder {prompt_dir} does not exist")
        for path in sorted(Path(prompt_dir).iterdir()):
            match = _FILE_NAME.match(path.name)
            if match:  # the user's file of the same name and version wins
                found[(match["name"], int(match["version"]))] = (path.read_text(encoding="utf-8"), str(path))
    return found


def load_prompt(name: str, version: int | None = None, prompt_dir: str | Path | None = None) -> Prompt:
    """The prompt ``name`` at ``version`` (default: the highest there is), from ``prompt_dir`` when it has it,
    else from the package."""
    found = _candidates(Path(prompt_dir) if prompt_dir else None)
    versions = sorted(v for (n, v) in found if n == name)
    if not versions:
        known = sorted({n for (n, _) in found})
        raise PromptError(f"no prompt named {name!r} (known: {', '.join(known)})")
    chosen = versions[-1] if version is None else version
    if (name, chosen) not in found:
        raise PromptError(f"prompt {name!r} has no version {chosen} (versions: {', '.join(map(str, versions))})")
    text, where = found[(name, chosen)]
    prompt = _parse_prompt(text, where)
    if (prompt.name, prompt.version) != (name, chosen):
        raise PromptError(f"{where}: says name {prompt.name!r} version {prompt.version}, its file name says otherwise")
    return prompt
