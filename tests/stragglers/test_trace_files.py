"""Trace files: the fast CSV path agrees with the strict parser, binary formats round-trip and
refuse bad headers before allocating, and `gcode trace convert` writes them."""

import numpy as np
import pytest

from gcode.cli import main
from gcode.stragglers import TraceError, load_trace
from gcode.stragglers.trace import _parse_csv_strictly, _parse_plain_csv, save_trace
from gcode.telemetry.messages import trace_to_proto


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def test_fast_csv_path_is_bit_identical_to_the_strict_parser(tmp_path):
    rng = np.random.default_rng(0)
    times = rng.uniform(0.1, 3.0, (40, 17))
    text = "\n".join(",".join(f"{v:.{rng.integers(1, 18)}g}" for v in row) for row in times) + "\n"
    raw = text.encode()
    fast = _parse_plain_csv(raw)
    assert fast is not None
    assert np.array_equal(fast, _parse_csv_strictly(raw, "t.csv"))
    assert fast.tobytes() == _parse_csv_strictly(raw, "t.csv").tobytes()


CELLS = [" 1.5 ", "+.5", "1e5", "5.", ".5", "1_0", "1.5e", "1-2", "", " ", "1 2", "0x10", "--1",
         "1E+05", "-0", "00012", "1.2.3", "e5", ".", "inf", "nan", "1e400", "0", "-3", "２"]


@pytest.mark.parametrize("cell", CELLS)
def test_fast_csv_path_accepts_only_what_the_strict_parser_accepts(cell):
    raw = f"1.0,{cell}\n2.0,3.0\n".encode()
    fast = _parse_plain_csv(raw)
    try:
        strict = _parse_csv_strictly(raw, "t.csv")
    except TraceError:
        assert fast is None
        return
    assert fast is None or np.array_equal(fast, strict)


@pytest.mark.parametrize("text,message", [
    ("1,2\n\n3,4\n", "line 2 is empty"),
    ("1,2\n   \n3,4\n", "line 2 is empty"),
    ("1,2\r3,4\r", None),  # old Mac line ends: the strict parser reads them
    ("\ufeff1,2\n3,4\n", None),  # a UTF-8 BOM
    ("1,2\n3\n", "line 2 has 1 columns"),
])
def test_unusual_csv_goes_through_the_strict_parser(tmp_path, text, message):
    path = _write(tmp_path, "t.csv", text)
    if message is None:
        assert load_trace(path).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    else:
        with pytest.raises(TraceError, match=message):
            load_trace(path)


@pytest.mark.parametrize("suffix", [".npy", ".pb", ".csv"])
def test_binary_and_text_traces_round_trip_exactly(tmp_path, suffix):
    times = np.random.default_rng(1).uniform(0.01, 9.0, (7, 5))
    path = tmp_path / f"t{suffix}"
    save_trace(times, path)
    back = load_trace(path)
    assert back.dtype == np.float64 and back.tobytes() == times.tobytes()


def test_npy_of_float32_and_fortran_order_is_read(tmp_path):
    times = np.asfortranarray(np.arange(1, 13, dtype=np.float32).reshape(3, 4))
    np.save(tmp_path / "t.npy", times)
    assert np.array_equal(load_trace(tmp_path / "t.npy"), times.astype(np.float64))


def _npy_header(shape, descr="<f8") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@pytest.mark.parametrize("data,message", [
    (_npy_header((10**7, 10**7)) + b"\0" * 64, r"claims shape \[10000000, 10000000\]"),
    (_npy_header((2, 3)) + b"\0" * 40, "the file holds 40"),
    (_npy_header((6,)) + b"\0" * 48, "2-D"),
    (_npy_header((0, 3)), "non-empty 2-D"),
    (_npy_header((2, 2), "|O"), "float32 or float64"),
    (_npy_header((2, 2), "<i8") + b"\0" * 32, "float32 or float64"),
    (b"\x93NUMPY\x01\x00\xff", "not a valid .npy file"),
])
def test_bad_npy_headers_are_refused_before_allocating(tmp_path, data, message):
    path = _write(tmp_path, "t.npy", data)
    with pytest.raises(TraceError, match=message) as info:
        load_trace(path)
    assert str(info.value).startswith(str(path))


@pytest.mark.parametrize("value,message", [(-1.0, "row 2, column 3: time -1.0 is not > 0"),
                                           (np.nan, "row 2, column 3: time nan is not finite")])
def test_binary_values_are_checked_by_position(tmp_path, value, message):
    times = np.ones((3, 4))
    times[1, 2] = value
    np.save(tmp_path / "t.npy", times)
    (tmp_path / "t.pb").write_bytes(trace_to_proto(times).SerializeToString())
    for name in ("t.npy", "t.pb"):
        with pytest.raises(TraceError, match=message):
            load_trace(tmp_path / name)


def test_a_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "t.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(TraceError, match="float32 or float64"):
        load_trace(tmp_path / "t.npy")


def test_bad_protobuf_traces_name_the_file(tmp_path):
    with pytest.raises(TraceError, match="t.pb: not a gcode.v1.Trace"):
        load_trace(_write(tmp_path, "t.pb", b"\xff\xff\xff\xff"))
    message = trace_to_proto(np.ones((2, 3)))
    message.times = message.times[:-8]
    with pytest.raises(TraceError, match="t.pb: trace holds 40 bytes"):
        load_trace(_write(tmp_path, "t.pb", message.SerializeToString()))


def test_cli_trace_convert(tmp_path, capsys):
    csv = _write(tmp_path, "t.csv", "1.5,2\n3,0.25\n")
    assert main(["trace", "convert", str(csv), str(tmp_path / "t.npy")]) == 0
    assert "2 rounds x 2 workers" in capsys.readouterr().out
    assert main(["trace", "convert", str(tmp_path / "t.npy"), str(tmp_path / "t.pb")]) == 0
    assert load_trace(tmp_path / "t.pb").tolist() == [[1.5, 2.0], [3.0, 0.25]]
    assert main(["trace", "convert", str(csv), str(tmp_path / "t.txt")]) == 2
    assert "unknown trace format '.txt'" in capsys.readouterr().err
    assert main(["trace", "convert", str(tmp_path / "missing.csv"), str(tmp_path / "o.npy")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = _write(tmp_path, "bad.csv", "1,2\n3,oops\n")
    assert main(["trace", "convert", str(bad), str(tmp_path / "o.npy")]) == 2
    assert "bad.csv: line 2, column 2: 'oops' is not a number" in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()
