"""Corrupted and hostile exports: each is one ``PolicyFormatError``, fast and in bounded memory.

Every case starts from the serving tests' valid export and breaks one thing: the zip, a
``.npy`` header, an array, a key or a type of ``policy.json``, the action catalogue, the
scenario. A seeded fuzz of byte flips and cuts then checks that nothing else ever escapes.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib import format as npy_format

from nba.scenario import Scenario
from nba.serving.spec import (
    MAX_HIDDEN,
    MAX_SPEC_BYTES,
    SPEC_FILE,
    WEIGHTS_FILE,
    PolicyFormatError,
    UnverifiedExportWarning,
    load_exported,
)

Mutation = Callable[[Path], None]


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("NBA_SIGNING_KEY", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedExportWarning)
        yield


# ------------------------------------------------------------------------------ helpers
def _members(folder: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(folder / WEIGHTS_FILE) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_members(folder: Path, members: dict[str, bytes], compress: bool = False) -> None:
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(folder / WEIGHTS_FILE, "w", mode) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _header_only(shape: tuple[int, ...], descr: str = "<f4", payload: bytes = b"") -> bytes:
    """A ``.npy`` whose header claims ``shape`` followed by ``payload`` (no real data)."""
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue() + payload


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _save(folder: Path, arrays: dict[str, Any]) -> None:
    np.savez(folder / WEIGHTS_FILE, **arrays)


def _replace_array(name: str, data: bytes) -> Mutation:
    def mutate(folder: Path) -> None:
        members = _members(folder)
        members[f"{name}.npy"] = data
        _write_members(folder, members)

    return mutate


def _edit_array(name: str, edit: Callable[[np.ndarray], Any]) -> Mutation:
    def mutate(folder: Path) -> None:
        arrays = _arrays(folder)
        arrays[name] = edit(arrays[name].copy())
        _save(folder, arrays)

    return mutate


def _spec(folder: Path) -> dict[str, Any]:
    return json.loads((folder / SPEC_FILE).read_text())


def _edit_spec(edit: Callable[[dict[str, Any]], Any]) -> Mutation:
    def mutate(folder: Path) -> None:
        spec = _spec(folder)
        edit(spec)
        (folder / SPEC_FILE).write_text(json.dumps(spec))

    return mutate


def _set(path: str, value: Any) -> Mutation:
    def edit(spec: dict[str, Any]) -> None:
        node: Any = spec
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return _edit_spec(edit)


def _write(name: str, data: bytes) -> Mutation:
    return lambda folder: (folder / name).write_bytes(data)


def _with_scenario(change: Callable[[dict[str, Any]], None], refingerprint: bool) -> Mutation:
    def edit(spec: dict[str, Any]) -> None:
        change(spec["scenario"])
        if refingerprint:
            spec["scenario_fingerprint"] = Scenario.from_dict(spec["scenario"]).fingerprint()

    return _edit_spec(edit)


def _swap_actions(spec: dict[str, Any]) -> None:
    spec["actions"][1], spec["actions"][2] = spec["actions"][2], spec["actions"][1]


def _hidden_too_wide(folder: Path) -> None:
    arrays = _arrays(folder)
    width = MAX_HIDDEN + 1
    arrays["policy.0.weight"] = np.zeros((width, arrays["policy.0.weight"].shape[1]), "f4")
    arrays["policy.0.bias"] = np.zeros(width, "f4")
    arrays["policy.1.weight"] = np.zeros((arrays["policy.1.weight"].shape[0], width), "f4")
    _save(folder, arrays)


def _inflates_past_its_shape(folder: Path) -> None:
    """A deflated member with the right header whose data goes on for 100 MB (a zip bomb)."""
    members = _members(folder)
    shape = _arrays(folder)["policy.0.bias"].shape
    del members["policy.0.bias.npy"]
    _write_members(folder, members)
    info = zipfile.ZipInfo("policy.0.bias.npy")
    info.compress_type = zipfile.ZIP_DEFLATED
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(folder / WEIGHTS_FILE, "a") as archive:
        with archive.open(info, "w") as member:
            member.write(_header_only(shape))
            for _ in range(100):
                member.write(chunk)


def _huge_entry_list(folder: Path) -> None:
    data = bytearray((folder / WEIGHTS_FILE).read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 12 : end + 16] = struct.pack("<I", 50_000_000)
    (folder / WEIGHTS_FILE).write_bytes(bytes(data))


def _flip_stored_byte(folder: Path) -> None:
    data = bytearray((folder / WEIGHTS_FILE).read_bytes())
    data[400] ^= 0x01  # inside policy.0.weight's data, past its header
    (folder / WEIGHTS_FILE).write_bytes(bytes(data))


def _deep_metadata(spec: dict[str, Any]) -> None:
    node: dict[str, Any] = {}
    spec["metadata"] = node
    for _ in range(200):
        node["x"] = {}
        node = node["x"]


def _relax_consent(scenario: dict[str, Any]) -> None:
    channels = [c["name"] for c in scenario["channels"]]
    for persona in scenario["personas"]:
        persona["consent"] = channels


def _fewer_actions(scenario: dict[str, Any]) -> None:
    scenario["actions"] = scenario["actions"][:-1]


CASES: dict[str, tuple[Mutation, str]] = {
    # the files
    "no policy.json": (lambda f: (f / SPEC_FILE).unlink(), r"missing policy\.json"),
    "no weights.npz": (lambda f: (f / WEIGHTS_FILE).unlink(), r"missing weights\.npz"),
    "weights.npz is a folder": (
        lambda f: ((f / WEIGHTS_FILE).unlink(), (f / WEIGHTS_FILE).mkdir()),
        r"missing weights\.npz",
    ),
    "weights not a zip": (_write(WEIGHTS_FILE, b"just text, no zip"), r"weights\.npz: not a zip"),
    "weights empty": (_write(WEIGHTS_FILE, b""), r"weights\.npz"),
    "weights cut in half": (
        lambda f: (f / WEIGHTS_FILE).write_bytes((f / WEIGHTS_FILE).read_bytes()[:30_000]),
        r"weights\.npz",
    ),
    "weights a pickle": (
        _write(WEIGHTS_FILE, b"\x80\x04\x95cos\nsystem\n(S'touch pwned'\ntR."),
        r"weights\.npz: not a zip",
    ),
    "zip entry list of 50 MB": (_huge_entry_list, r"entry list"),
    "bad CRC": (_flip_stored_byte, r"weights\.npz: not a readable .npz.*CRC"),
    "member not .npy": (
        lambda f: _write_members(f, {**_members(f), "notes.txt": b"hello"}),
        r"unexpected member 'notes\.txt'",
    ),
    "npy bad magic": (_replace_array("policy.0.bias", b"NOTNUMPY" * 10), r"not a plain \.npy"),
    # headers that lie
    "header claims 10^12 elements": (
        _replace_array("policy.0.weight", _header_only((1_000_000, 1_000_000))),
        r"'policy\.0\.weight'.*shape \(1000000, 1000000\)",
    ),
    "bias header claims 10^12": (
        _replace_array("policy.2.bias", _header_only((10**12,))),
        r"'policy\.2\.bias'.*shape \(1000000000000,\)",
    ),
    "header with 3 dimensions": (
        _replace_array("value.0.weight", _header_only((64, 44, 1))),
        r"'value\.0\.weight'.*shape",
    ),
    "data shorter than header": (
        _replace_array("policy.2.bias", _header_only((13,), payload=b"\0" * 8)),
        r"'policy\.2\.bias' is truncated",
    ),
    "data longer than header": (
        _replace_array("policy.2.bias", _header_only((13,), payload=b"\0" * 60)),
        r"'policy\.2\.bias' has data past its shape",
    ),
    "inflates 100 MB past its shape": (_inflates_past_its_shape, r"past its shape"),
    # dtypes
    "pickled object array": (
        _replace_array("policy.0.weight", _npy(np.array([object()], dtype=object))),
        r"dtype object; expected plain arrays of floats",
    ),
    "integer weights": (
        _edit_array("policy.1.weight", lambda a: a.astype(np.int32)),
        r"'policy\.1\.weight' has dtype int32",
    ),
    "complex weights": (
        _edit_array("policy.1.bias", lambda a: a.astype(np.complex64)),
        r"dtype complex64",
    ),
    "structured dtype": (
        _edit_array("value.2.bias", lambda a: np.zeros(1, dtype=[("x", "<f4")])),
        r"'value\.2\.bias' has dtype",
    ),
    "string array": (
        _edit_array("value.2.bias", lambda a: np.array(["1.0"])),
        r"'value\.2\.bias' has dtype <U3",
    ),
    # values and shapes
    "NaN weight": (
        _edit_array("policy.1.weight", lambda a: (a.__setitem__((0, 0), np.nan), a)[1]),
        r"'policy\.1\.weight' has NaN or infinite values",
    ),
    "infinite bias": (
        _edit_array("value.0.bias", lambda a: (a.__setitem__(3, np.inf), a)[1]),
        r"'value\.0\.bias' has NaN",
    ),
    "float64 overflows float32": (
        _edit_array("policy.0.bias", lambda a: a.astype(np.float64) + 1e300),
        r"'policy\.0\.bias' has NaN or infinite",
    ),
    "missing array": (
        lambda f: _save(f, {k: v for k, v in _arrays(f).items() if k != "policy.2.bias"}),
        r"missing array 'policy\.2\.bias'",
    ),
    "hidden layers do not chain": (
        _edit_array("policy.1.weight", lambda a: a[:, :32]),
        r"'policy\.1\.weight'.*expected \(outputs, 64\)",
    ),
    "input is not the features": (
        _edit_array("policy.0.weight", lambda a: a[:, :-1]),
        r"'policy\.0\.weight'.*expected \(outputs, 44\)",
    ),
    "one output short of the actions": (
        lambda f: _save(
            f,
            {
                **_arrays(f),
                "policy.2.weight": _arrays(f)["policy.2.weight"][:-1],
                "policy.2.bias": _arrays(f)["policy.2.bias"][:-1],
            },
        ),
        r"has 12 outputs, expected 13 \(one per action\)",
    ),
    "value head with 2 outputs": (
        lambda f: _save(
            f,
            {
                **_arrays(f),
                "value.2.weight": np.zeros((2, 64), "f4"),
                "value.2.bias": np.zeros(2, "f4"),
            },
        ),
        r"expected 1 \(the value\)",
    ),
    "bias shape": (
        _edit_array("value.1.bias", lambda a: a[:10]),
        r"'value\.1\.bias'.*expected \(64,\)",
    ),
    "hidden layer too wide": (_hidden_too_wide, rf"1 to {MAX_HIDDEN} units"),
    # policy.json as a file
    "spec not JSON": (_write(SPEC_FILE, b"{not json"), r"policy\.json: not valid JSON"),
    "spec not UTF-8": (_write(SPEC_FILE, b"\xff\xfe{}"), r"policy\.json: not valid JSON"),
    "spec a list": (_write(SPEC_FILE, b"[1, 2]"), r"policy\.json: expected a JSON object"),
    "spec with NaN": (
        lambda f: (f / SPEC_FILE).write_text(
            (f / SPEC_FILE).read_text().replace('"value_scale": 3.0', '"value_scale": NaN')
        ),
        r"policy\.json: not valid JSON: NaN",
    ),
    "spec nested 10^5 deep": (
        _write(SPEC_FILE, b"[" * 100_000 + b"]" * 100_000),
        r"policy\.json: not valid JSON: nested too deeply",
    ),
    "spec metadata nested 200 deep": (_edit_spec(_deep_metadata), r"nested deeper than 64"),
    "spec a 5 MB file": (
        _write(SPEC_FILE, b" " * (MAX_SPEC_BYTES + 1)),
        r"policy\.json: larger than",
    ),
    "spec with a 10^5-digit number": (
        _write(SPEC_FILE, b'{"format": "nba-policy/1", "value_scale": ' + b"9" * 100_000 + b"}"),
        r"policy\.json: not valid JSON",
    ),
    # policy.json's fields
    "format 2": (_set("format", "nba-policy/2"), r"policy\.json\.format: expected"),
    "wrong policy_output": (_set("policy_output", "probabilities"), r"policy\.json\.policy_output"),
    "value_scale zero": (_set("value_scale", 0), r"policy\.json\.value_scale"),
    "value_scale negative": (_set("value_scale", -3.0), r"policy\.json\.value_scale"),
    "value_scale infinite": (
        lambda f: (f / SPEC_FILE).write_text(
            (f / SPEC_FILE).read_text().replace('"value_scale": 3.0', '"value_scale": 1e999')
        ),
        r"policy\.json\.value_scale",
    ),
    "value_scale a string": (_set("value_scale", "3.0"), r"policy\.json\.value_scale"),
    "value_scale a bool": (_set("value_scale", True), r"policy\.json\.value_scale"),
    "features a dict": (_set("features", {"a": 1}), r"policy\.json\.features"),
    "action index a string": (_set("actions.0.index", "0"), r"policy\.json\.actions\[0\]\.index"),
    "layer weight a number": (
        _set("networks.policy.0.weight", 5),
        r"policy\.json\.networks\.policy\[0\]\.weight",
    ),
    "networks a list": (_set("networks", []), r"policy\.json\.networks"),
    "no policy layers": (_set("networks.policy", []), r"policy\.json\.networks\.policy"),
    "unknown activation": (
        _set("networks.policy.0.activation", "sigmoid"),
        r"networks\.policy\[0\]\.activation",
    ),
    "unknown key": (_set("colour", "blue"), r"policy\.json\.colour: Extra inputs"),
    "layer names an unused array": (
        _set("networks.value.0.bias", "value.0.weight"),
        r"'value\.0\.bias' is not used",
    ),
    # against the scenario
    "actions swapped": (_edit_spec(_swap_actions), r"policy\.json\.actions\[1\]"),
    "action channel changed": (
        _set("actions.1.channel", "sms"),
        r"policy\.json\.actions\[1\]: does not match the scenario's actions: export .*'sms'",
    ),
    "features renamed": (
        _set("features.0", "persona=anyone"),
        r"policy\.json\.features: 44 names that are not a feature layout",
    ),
    "relaxed consent, old fingerprint": (
        _with_scenario(_relax_consent, refingerprint=False),
        r"policy\.json\.scenario_fingerprint: does not match",
    ),
    "one action fewer, recomputed fingerprint": (
        _with_scenario(_fewer_actions, refingerprint=True),
        r"policy\.json\.actions\[12\]: .*winback.*, scenario none",
    ),
    "invalid scenario": (
        _with_scenario(lambda s: s.update(discount_factor=7), refingerprint=False),
        r"policy\.json\.scenario: invalid scenario: discount_factor",
    ),
    "scenario_name differs": (_set("scenario_name", "other"), r"policy\.json\.scenario_name"),
    "fingerprint not hex": (_set("scenario_fingerprint", "x"), r"scenario_fingerprint"),
}


def _unused_large_array(folder: Path) -> None:
    _save(folder, {**_arrays(folder), "junk": np.zeros((1000, 1000), "f4")})


CASES["unused large array"] = (_unused_large_array, r"'junk' is not used by policy\.json")

REQUIRED = [
    "format",
    "algorithm",
    "policy_output",
    "scenario_name",
    "scenario_fingerprint",
    "scenario",
    "features",
    "actions",
    "networks",
    "value_scale",
]
for _key in REQUIRED:
    CASES[f"no {_key}"] = (
        _edit_spec(lambda spec, key=_key: spec.pop(key)),
        rf"policy\.json(\.{_key}: Field required|\.format: expected)",
    )


@pytest.fixture
def copy(export_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(export_dir, tmp_path / "policy"))


def test_the_valid_export_loads(copy: Path) -> None:
    policy = load_exported(copy)
    assert policy.policy.output_size == 13 and policy.value is not None


@pytest.mark.timeout(20, func_only=True)  # refused, not worked through: no hang
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_hostile_export_is_one_policy_format_error(case: str, copy: Path) -> None:
    mutate, expected = CASES[case]
    mutate(copy)
    with pytest.raises(PolicyFormatError, match=expected) as info:
        load_exported(copy)
    assert type(info.value) is PolicyFormatError
    message = str(info.value)
    assert message.startswith(("policy.json", "weights.npz", "policy: missing")), message
    assert "\n" not in message and len(message) < 600, message


def test_a_header_claiming_10_12_elements_allocates_nothing(copy: Path) -> None:
    _replace_array("policy.0.weight", _header_only((1_000_000, 1_000_000)))(copy)
    tracemalloc.start()
    try:
        with pytest.raises(PolicyFormatError, match="shape"):
            load_exported(copy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak:,} bytes"


def test_a_deflate_bomb_is_not_inflated(copy: Path) -> None:
    _inflates_past_its_shape(copy)
    assert (copy / WEIGHTS_FILE).stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(PolicyFormatError, match="past its shape"):
            load_exported(copy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak:,} bytes"


@pytest.mark.timeout(30, func_only=True)  # 150 loads, each refused or loaded: no hang
@pytest.mark.parametrize("name", [WEIGHTS_FILE, SPEC_FILE])
def test_fuzzed_bytes_load_or_fail_with_our_error(
    name: str, export_dir: Path, tmp_path: Path
) -> None:
    """Seeded byte flips and cuts: a load either succeeds or raises PolicyFormatError."""
    original = (export_dir / name).read_bytes()
    rng = np.random.default_rng(13)
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(150):
        folder = Path(shutil.copytree(export_dir, tmp_path / f"p{trial}"))
        data = bytearray(original)
        if trial % 3 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for at in rng.integers(0, len(data), int(rng.integers(1, 8))):
                data[at] = int(rng.integers(0, 256))
        (folder / name).write_bytes(bytes(data))
        try:
            load_exported(folder)
            outcomes["loaded"] += 1
        except PolicyFormatError:
            outcomes["refused"] += 1
        shutil.rmtree(folder)
    assert outcomes["refused"] > 50
