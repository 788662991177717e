"""JSON text: the one-shot encoder (plain and canonical) and decoder every walk's data goes through."""

from __future__ import annotations

import json
import json.encoder
import json.scanner
from collections.abc import Callable
from typing import Any


def _one_shot_encoder(*, sort_keys: bool) -> Callable[[Any], str]:
    """``json.dumps`` with fixed options, minus the Python set-up it repeats on every call.

    Calls the C encoder directly when it exists (it does in CPython); the output is the
    same text ``JSONEncoder.encode`` gives. No circular-reference check: every caller
    passes data that the walks here built (bounded by ``MAX_DEPTH``), or plain scalars.
    """
    reference = json.JSONEncoder(sort_keys=sort_keys, ensure_ascii=False, separators=(",", ":"))
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:
        return reference.encode
    chunks = make_encoder(
        None, reference.default, json.encoder.encode_basestring, None, ":", ",", sort_keys, False, True
    )
    return lambda data: "".join(chunks(data, 0))


def _one_shot_decoder() -> Callable[[str], Any]:
    """``json.loads`` minus its whitespace regexes; anything unusual takes the full path."""
    full = json.JSONDecoder()
    scan = json.scanner.make_scanner(full)  # type: ignore[arg-type]  # typeshed misnames the parameter type

    def decode(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration:
            return full.decode(text)  # raises JSONDecodeError with its position
        return value if end == len(text) else full.decode(text)

    return decode


_encode = _one_shot_encoder(sort_keys=False)
_canonical = _one_shot_encoder(sort_keys=True)
_decode = _one_shot_decoder()
