"""The manifest reader: good manifests parse, each kind of bad one fails with file, row, column."""

import codecs
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from vtl.errors import ManifestError
from vtl.manifest import read_manifest, write_manifest

HEADER = "video_id,path,action,comedy,split0,split1"
ROWS = [
    "a,videos/a.mp4,1,0,train,test",
    "b,videos/b.mp4,0,1,val,train",
    "c,videos/c.mp4,1,1,test,val",
    "d,videos/d.mp4,0,0,train,train",
]


def write(tmp_path: Path, lines: list[str], make_files: bool = True) -> Path:
    (tmp_path / "videos").mkdir(exist_ok=True)
    if make_files:
        for name in "abcd":
            (tmp_path / "videos" / f"{name}.mp4").write_bytes(b"x")
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_good_manifest_parses(tmp_path):
    m = read_manifest(write(tmp_path, [HEADER, *ROWS]))
    assert m.video_ids == ["a", "b", "c", "d"]
    assert m.label_names == ["action", "comedy"]
    assert m.paths[0] == (tmp_path / "videos" / "a.mp4").resolve()
    np.testing.assert_array_equal(m.labels, [[1, 0], [0, 1], [1, 1], [0, 0]])
    np.testing.assert_array_equal(m.splits, [[0, 2], [1, 0], [2, 1], [0, 0]])


def test_numeric_split_codes_and_absolute_paths(tmp_path):
    absolute = tmp_path / "videos" / "a.mp4"
    rows = [r.replace("train", "0").replace("val", "1").replace("test", "2") for r in ROWS]
    rows[0] = rows[0].replace("videos/a.mp4", str(absolute))
    m = read_manifest(write(tmp_path, [HEADER, *rows]))
    assert m.paths[0] == absolute.resolve()
    np.testing.assert_array_equal(m.splits[:, 0], [0, 1, 2, 0])


def test_round_trip_through_writer(tmp_path):
    m = read_manifest(write(tmp_path, [HEADER, *ROWS]))
    rel = [str(p.relative_to(tmp_path)) for p in m.paths]
    again = read_manifest(
        write_manifest(tmp_path / "copy.csv", m.video_ids, rel, m.label_names, m.labels, m.splits)
    )
    np.testing.assert_array_equal(again.labels, m.labels)
    np.testing.assert_array_equal(again.splits, m.splits)


@pytest.mark.parametrize(
    "lines, expected",
    [
        (
            [HEADER, *ROWS, "a,videos/b.mp4,0,0,train,train"],
            r"row 6, column video_id: duplicate id 'a' \(first on row 2\)",
        ),
        (
            [HEADER, "a,videos/a.mp4,2,0,train,test", *ROWS[1:]],
            r"row 2, column action: label '2' is not 0 or 1",
        ),
        (
            [HEADER, "a,videos/a.mp4,1,0,holdout,test", *ROWS[1:]],
            r"row 2, column split0: unknown split 'holdout'",
        ),
        (
            [HEADER, "a,videos/zz.mp4,1,0,train,test", *ROWS[1:]],
            r"row 2, column path: video file not found: .*zz.mp4",
        ),
        ([HEADER, "a,videos/a.mp4,1,0,train", *ROWS[1:]], r"row 2: 5 fields but the header has 6"),
        ([HEADER, *(r.replace(",val,", ",train,") for r in ROWS)], r"column split0: no val videos"),
        (["video_id,action,split0", "a,1,train"], r"row 1: missing column 'path'"),
        (["video_id,path,action", "a,videos/a.mp4,1"], r"row 1: no split column"),
        (["video_id,path,split0", "a,videos/a.mp4,train"], r"row 1: no label column"),
        ([HEADER], r"header but no videos"),
        ([HEADER, ",videos/a.mp4,1,0,train,test"], r"row 2, column video_id: empty id"),
        (  # the id's case: a hint, not just "missing"
            [HEADER.replace("video_id", "Video_ID"), *ROWS],
            r"row 1: missing column 'video_id' \(the header has 'Video_ID'",
        ),
        (["video_id,path,action,Split0", "a,videos/a.mp4,1,train"], r"no split column \('Split0'"),
        (  # rows are counted in lines: a quoted id spanning two lines moves the next ones down
            [
                HEADER,
                '"a',
                'x",videos/a.mp4,1,0,train,test',
                ROWS[1],
                "c,videos/c.mp4,1,7,test,val",
            ],
            r"row 5, column comedy: label '7' is not 0 or 1",
        ),
        (  # a quote never closed swallows the rows after it
            [HEADER, 'a,"videos/a.mp4,1,0,train,test', *ROWS[1:]],
            r"row 2: 2 fields but the header has 6; .*a field spans lines: check the row's quotes",
        ),
        (  # HDF5 stores no string with a NUL: before, the run failed when its file was finished
            [HEADER, "a\0b,videos/a.mp4,1,0,train,test", *ROWS[1:]],
            r"row 2: a NUL character \(not text",
        ),
        (  # before, "File name too long" naming neither the manifest nor the row
            [HEADER, f"a,videos/{'x' * 300}.mp4,1,0,train,test", *ROWS[1:]],
            r"row 2, column path: file name too long: .*xxx\.\.\.xxx.*\(\d+ characters\)",
        ),
        (
            [HEADER, f"{'a' * 140_000},videos/a.mp4,1,0,train,test", *ROWS[1:]],
            r"row 2: not readable as CSV \(field larger than field limit.*a quote",
        ),
    ],
)
def test_bad_manifests_name_file_row_and_column(tmp_path, lines, expected):
    path = write(tmp_path, lines)
    with pytest.raises(ManifestError, match=expected) as info:
        read_manifest(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_empty_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(tmp_path / "empty.csv")


def test_missing_files_allowed_when_not_checked(tmp_path):
    m = read_manifest(write(tmp_path, [HEADER, *ROWS], make_files=False), check_files=False)
    assert len(m) == 4


@pytest.mark.parametrize("separator", [";", "\t"])
def test_semicolons_or_tabs_as_a_spreadsheet_saves_them(tmp_path, separator):
    """A spreadsheet in a locale whose decimal mark is the comma saves "CSV" with semicolons
    (and TSV has tabs): the header row tells, and the manifest reads as with commas (before,
    "missing column 'video_id'"). A comma in a path is then part of the path."""
    rows = [row.replace(",", separator) for row in ROWS]
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a, the first.mp4").write_bytes(b"x")
    rows[0] = rows[0].replace("videos/a.mp4", "videos/a, the first.mp4")
    m = read_manifest(write(tmp_path, [HEADER.replace(",", separator), *rows]))
    assert m.video_ids == ["a", "b", "c", "d"] and m.label_names == ["action", "comedy"]
    assert m.paths[0].name == "a, the first.mp4"
    np.testing.assert_array_equal(m.labels, [[1, 0], [0, 1], [1, 1], [0, 0]])
    np.testing.assert_array_equal(m.splits, [[0, 2], [1, 0], [2, 1], [0, 0]])


def test_labels_as_pandas_and_spreadsheets_write_them(tmp_path):
    """0/1 also as pandas writes a float label column (1.0, 0.0) and as booleans (True, false);
    anything else, an empty cell included (missing is not negative), is one line as before."""
    rows = [
        "a,videos/a.mp4,1.0,0,train,test",
        "b,videos/b.mp4,0.0,1,val,train",
        "c,videos/c.mp4,True,1,test,val",
        "d,videos/d.mp4,false,0,train,train",
    ]
    m = read_manifest(write(tmp_path, [HEADER, *rows]))
    np.testing.assert_array_equal(m.labels[:, 0], [1, 0, 1, 0])
    for bad in ("2", "0.5", "", "yes", "nan", "-0.0x"):
        broken = [rows[0], rows[1].replace(",0.0,", f",{bad},"), *rows[2:]]
        with pytest.raises(ManifestError, match=f"row 3, column action: label {bad!r} is not 0"):
            read_manifest(write(tmp_path, [HEADER, *broken]))


def test_split_values_in_any_case_and_the_other_names_of_val(tmp_path):
    rows = [r.replace("val", "Validation") for r in ROWS]
    rows[2] = rows[2].replace("Validation", "DEV")
    m = read_manifest(write(tmp_path, [HEADER, *rows]))
    np.testing.assert_array_equal(m.splits, [[0, 2], [1, 0], [2, 1], [0, 0]])


def test_paths_with_a_home_or_windows_backslashes(tmp_path, monkeypatch):
    """`~` is the home folder; a path written on Windows (`videos\\b.mp4`) is read with slashes
    where the file is there so, while a file whose name holds a backslash is taken as named."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "clips").mkdir(parents=True)
    (tmp_path / "home" / "clips" / "a.mp4").write_bytes(b"x")
    rows = [ROWS[0].replace("videos/a.mp4", "~/clips/a.mp4"), *ROWS[1:]]
    rows[1] = rows[1].replace("videos/b.mp4", "videos\\b.mp4")
    rows[2] = rows[2].replace("videos/c.mp4", "odd\\name.mp4")
    path = write(tmp_path, [HEADER, *rows])
    (tmp_path / "odd\\name.mp4").write_bytes(b"x")
    m = read_manifest(path)
    assert m.paths[0] == (tmp_path / "home" / "clips" / "a.mp4").resolve()
    assert m.paths[1] == (tmp_path / "videos" / "b.mp4").resolve()
    assert m.paths[2].name == "odd\\name.mp4"


def test_rows_naming_one_file_are_warned_of(tmp_path):
    """The same video twice (under two ids) is extracted twice and, in two splits, leaks its
    test labels into training: a warning names the rows' ids."""
    rows = [*ROWS[:3], ROWS[3].replace("videos/d.mp4", "videos/../videos/a.mp4")]
    with pytest.warns(UserWarning, match=r"rows name the same video file \(a, d\)"):
        m = read_manifest(write(tmp_path, [HEADER, *rows]))
    assert m.paths[0] == m.paths[3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_manifest(write(tmp_path, [HEADER, *ROWS]))  # distinct files: no warning


def test_a_spreadsheets_encodings_and_empty_trailing_columns(tmp_path):
    """A spreadsheet's "Unicode text" (UTF-16 with a byte-order mark) and UTF-8 with a mark read
    as plain UTF-8 does; the empty, unnamed columns a spreadsheet writes after the last one are
    dropped (before, "a column has an empty name"). Text in another encoding is one line naming
    the file, the row and the fix; an unnamed column that holds values is still refused."""
    lines = [HEADER + ",,", *(row + ",," for row in ROWS)]
    path = write(tmp_path, lines)
    text = path.read_text()
    for encoding in ("utf-16", "utf-8-sig", "utf-32"):
        path.write_bytes(text.encode(encoding))
        m = read_manifest(path)
        assert m.video_ids == ["a", "b", "c", "d"] and m.label_names == ["action", "comedy"]
        np.testing.assert_array_equal(m.splits, [[0, 2], [1, 0], [2, 1], [0, 0]])
    path.write_bytes(text.replace("comedy", "comédie").encode("cp1252"))
    with pytest.raises(ManifestError, match=r"m.csv, row 1: not UTF-8 text \(byte 0xe9.*CSV UTF-8"):
        read_manifest(path)
    named = [HEADER + ",", *(row + ",x" for row in ROWS)]
    with pytest.raises(ManifestError, match="row 1: a column has an empty name"):
        read_manifest(write(tmp_path, named))


def test_text_that_is_not_utf8_or_holds_a_byte_order_mark_twice(tmp_path):
    """UTF-16 without a byte-order mark (NUL bytes between the letters) is one line; a UTF-8
    byte-order mark written twice is read past (before, "missing column 'video_id'")."""
    path = write(tmp_path, [HEADER, *ROWS])
    text = path.read_text()
    path.write_bytes(text.encode("utf-16-le"))
    with pytest.raises(ManifestError, match=r"m.csv, row 1: a NUL character .*UTF-16 text"):
        read_manifest(path)
    path.write_bytes(codecs.BOM_UTF8 * 2 + text.encode())
    assert read_manifest(path).video_ids == ["a", "b", "c", "d"]


def test_a_link_loop_and_a_hard_link(tmp_path):
    """A path in a loop of symbolic links says so (before, "video file not found"); one video
    under two names (a hard link) is warned of as the same path twice is."""
    path = write(tmp_path, [HEADER, *ROWS])
    (tmp_path / "videos" / "loop.mp4").symlink_to("loop.mp4")
    looped = [HEADER, *ROWS[:3], ROWS[3].replace("d.mp4", "loop.mp4")]
    with pytest.raises(ManifestError, match=r"row 5, column path: a loop of symbolic links: "):
        read_manifest(write(tmp_path, looped))
    os.link(tmp_path / "videos" / "a.mp4", tmp_path / "videos" / "e.mp4")
    linked = [HEADER, *ROWS[:3], ROWS[3].replace("d.mp4", "e.mp4")]
    with pytest.warns(UserWarning, match=r"rows name the same video file \(a, d\)"):
        read_manifest(write(tmp_path, linked))
    assert path.exists()


def test_a_label_no_video_has_is_warned_of(tmp_path):
    rows = [r.replace(",1,0,", ",0,0,").replace(",1,1,", ",0,1,") for r in ROWS]
    with pytest.warns(UserWarning, match=r"no video has label 'action' \(every value 0\)"):
        read_manifest(write(tmp_path, [HEADER, *rows]))
