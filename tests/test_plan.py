"""The .wbplan format: round trip, and refusal of corrupt, truncated or foreign plans."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

import workbench as wb
from workbench.errors import PlanFormatError


@pytest.fixture
def engine(tiny_model):
    return wb.build(wb.load(tiny_model), wb.BuilderConfig(batch_size=2))


def test_round_trip_gives_identical_outputs(engine, tmp_path):
    path = tmp_path / "m.wbplan"
    engine.save(path)
    loaded = wb.Engine.load(path)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(engine.create_context().run({"input": x})["logits"],
                                  loaded.create_context().run({"input": x})["logits"])
    assert [l.tactic for l in loaded.layers] == [l.tactic for l in engine.layers]
    assert loaded.profile == engine.profile
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert "manifest.json" in names and all(n.endswith((".json", ".npy")) for n in names)


@pytest.mark.parametrize("member", ["weights/00000.npy", "manifest.json"])
def test_corrupt_plan_is_refused(engine, member):
    data = bytearray(engine.to_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)   # the member's bytes
    data[start + info.compress_size // 2] ^= 0x01                                   # one flipped bit
    with pytest.raises(PlanFormatError, match=f"checksum mismatch in '{member}'|corrupt"):
        wb.Engine.load(bytes(data))


@pytest.mark.parametrize("keep", [0.3, 0.8, 0.999])
def test_truncated_plan_is_refused(engine, tmp_path, keep):
    data = engine.to_bytes()
    path = tmp_path / "cut.wbplan"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(PlanFormatError, match="cut.wbplan"):
        wb.Engine.load(path)


def _rewrite_manifest(data: bytes, edit) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    manifest = json.loads(members["manifest.json"])
    edit(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    members["checksums.json"] = json.dumps({n: hashlib.sha256(d).hexdigest() for n, d in members.items()
                                            if n != "checksums.json"}).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    return out.getvalue()


def test_wrong_version_is_refused(engine):
    data = _rewrite_manifest(engine.to_bytes(), lambda m: m.update(format_version=99))
    with pytest.raises(PlanFormatError, match="plan format version 99 .* reads version 1; rebuild"):
        wb.Engine.load(data)


def test_not_a_plan(tmp_path):
    path = tmp_path / "x.wbplan"
    path.write_bytes(b"PK but not really a zip" * 10)
    with pytest.raises(PlanFormatError, match="not a readable .wbplan"):
        wb.Engine.load(path)


def test_failed_save_leaves_nothing_behind(engine, tmp_path):
    path = tmp_path / "m.wbplan"
    path.write_bytes(b"previous plan")
    engine.layers[0].attrs["bogus"] = object()     # cannot be serialized
    with pytest.raises(PlanFormatError, match="bogus"):
        engine.save(path)
    assert path.read_bytes() == b"previous plan"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.wbplan"]


def test_plan_holds_no_pickle(engine):
    with zipfile.ZipFile(io.BytesIO(engine.to_bytes())) as archive:
        for name in archive.namelist():
            if name.endswith(".npy"):
                np.load(io.BytesIO(archive.read(name)), allow_pickle=False)   # raises if pickled


def test_a_gpu_plan_is_refused_on_another_gpu_or_without_one(tmp_path):
    import workbench as wb
    from workbench.errors import PlanFormatError
    from workbench.evaluate.datasets import digits_model_path
    engine = wb.build(wb.load(digits_model_path()), wb.BuilderConfig(batch_size=1, builder_level=0))
    engine.network.backend = "cuda"                       # as if tuned on a GPU this machine does not have
    engine.network.meta["device"] = "NVIDIA Imaginary GPU (sm_99)"
    path = tmp_path / "gpu.wbplan"
    engine.save(path)
    with pytest.raises(PlanFormatError, match="NVIDIA Imaginary GPU"):
        wb.Engine.load(path)
