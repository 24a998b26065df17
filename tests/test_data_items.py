"""Item sources: file discovery, labels from folders / regex / function / lists, splits."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fastcore_ext.data import (
    IMAGE_EXTENSIONS,
    MissingPathError,
    NotAFolderError,
    get_image_files,
    items_from_folder,
    items_from_lists,
    items_from_name_func,
    items_from_name_re,
    items_from_table,
    random_split,
    read_labels_csv,
    to_rgb,
    verify_images,
)
from fastcore_ext.data.items import _resolve_fnames, labels_of


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(path)
    return path


@pytest.fixture
def tree(tmp_path):
    """train/{cat,dog}, valid/{cat,dog}; 4+3 train and 2+1 valid images."""
    for split, counts in (("train", {"cat": 4, "dog": 3}), ("valid", {"cat": 2, "dog": 1})):
        for cls, n in counts.items():
            for i in range(n):
                _img(tmp_path / split / cls / f"{cls}_{i}.png")
    return tmp_path


def test_get_image_files_by_extension_recursive_sorted(tmp_path):
    a = _img(tmp_path / "b" / "x.JPG")
    b = _img(tmp_path / "a" / "deep" / "y.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    _img(tmp_path / ".hidden" / "z.png")
    _img(tmp_path / "a" / ".w.png")
    assert get_image_files(tmp_path) == sorted([a, b])
    assert get_image_files(tmp_path / "a", recurse=False) == []
    with pytest.raises(MissingPathError, match="path: expected an existing folder"):
        get_image_files(tmp_path / "nope")
    with pytest.raises(
        NotAFolderError, match="path: expected a folder, but .*notes.txt' is a file"
    ):
        get_image_files(tmp_path / "a" / "notes.txt")  # it said the file did not exist


def test_from_folder_train_valid(tree):
    s = items_from_folder(tree)
    assert s.classes == ["cat", "dog"]
    assert len(s.train_items) == 7 and len(s.valid_items) == 3
    for items, labels in ((s.train_items, s.train_labels), (s.valid_items, s.valid_labels)):
        assert [s.classes[y] for y in labels] == [p.parent.name for p in items]


def test_from_folder_valid_pct_is_seeded(tree):
    a = items_from_folder(tree, valid_pct=0.3, seed=1)
    b = items_from_folder(tree, valid_pct=0.3, seed=1)
    c = items_from_folder(tree, valid_pct=0.3, seed=2)
    assert a == b
    assert len(a.valid_items) == 3 and len(a.train_items) == 7  # int(0.3 * 10) valid of 10
    assert set(a.train_items).isdisjoint(a.valid_items)
    assert a.valid_items != c.valid_items
    assert [a.classes[y] for y in a.train_labels] == [p.parent.name for p in a.train_items]


@pytest.mark.parametrize("bad", [1, -0.1, 1.5, 1.0])
def test_valid_pct_outside_its_interval(tree, bad):
    with pytest.raises(ValueError, match=r"valid_pct: expected a float in \[0, 1\)"):
        items_from_folder(tree, valid_pct=bad)


@pytest.mark.parametrize("none", [0, 0.0])
def test_valid_pct_0_trains_on_every_item(tree, none):
    split = items_from_folder(tree, valid_pct=none)
    assert split.valid_items == [] and len(split.train_items) == len(get_image_files(tree))


def test_valid_pct_not_a_number(tree):
    with pytest.raises(TypeError, match="valid_pct"):
        items_from_folder(tree, valid_pct="0.2")


def test_valid_pct_leaving_an_empty_set(tree):
    with pytest.raises(ValueError, match="empty validation set"):
        items_from_folder(tree, valid_pct=0.05)


def test_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="no image files"):
        items_from_folder(tmp_path, valid_pct=0.2)
    with pytest.raises(MissingPathError, match="train: folder 'train' not found"):
        items_from_folder(tmp_path)


def test_missing_valid_folder_lists_what_is_there(tree):
    with pytest.raises(MissingPathError, match=r"valid: folder 'val' not found .*'train', 'valid'"):
        items_from_folder(tree, valid="val")
    with pytest.raises(MissingPathError, match="path: expected an existing folder"):
        items_from_folder(tree / "missing")
    file = next((tree / "train").rglob("*.*"))
    with pytest.raises(NotAFolderError, match="path: expected a folder, but .* is a file"):
        items_from_folder(file)


def test_empty_class_folders_are_ignored_with_one_capped_warning(tree):
    """fastai's from_folder: the classes are the labels of the files found, so an empty class
    folder is no class; one warning counts them and names a few (was: a ValueError)."""
    for i in range(30):
        (tree / "train" / f"e{i:02d}").mkdir()
    (tree / "train" / "bird").mkdir()
    (tree / "train" / "bird" / "readme.txt").write_text("x")
    (tree / "valid" / "fish").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = items_from_folder(tree)
    assert s.classes == ["cat", "dog"]
    assert len(s.train_items) == 7 and len(s.valid_items) == 3
    (w,) = caught
    msg = str(w.message)
    assert "path: ignored 32 class folders that hold no image files" in msg
    assert "31 in" in msg and "'bird', 'e00', 'e01', 'e02', 'e03' and 26 more" in msg
    assert "1 in" in msg and "('fish')" in msg and "e29" not in msg
    _img(tree / "valid" / "bird" / "b.png")  # a class with images in valid only
    with (
        pytest.warns(UserWarning, match="path: ignored 32 class folders"),
        pytest.raises(ValueError, match=r"valid: class folders 'bird' in .* have no images in "
                      r".*train' to learn from"),
    ):  # fmt: skip
        items_from_folder(tree)


def test_class_folders_all_empty(tree):
    for split in ("train", "valid"):
        for c in ("cat", "dog"):
            for f in (tree / split / c).iterdir():
                f.unlink()
    with pytest.raises(ValueError, match=r"train: none of the 2 class sub-folders of .* "
                       r"contains image files .*: 'cat', 'dog'$"):  # fmt: skip
        items_from_folder(tree)


def test_lists_of_names_in_messages_are_capped(tmp_path):
    """A folder of 3,000 sub-folders gave an error of 26,045 characters naming each."""
    for i in range(3000):
        (tmp_path / f"d{i:04d}").mkdir()
    with pytest.raises(MissingPathError) as e:
        items_from_folder(tmp_path)
    msg = str(e.value)
    assert "(sub-folders: 'd0000', 'd0001', 'd0002', 'd0003', 'd0004' and 2,995 more)" in msg
    assert len(msg) < 400


def test_valid_class_unknown_to_train(tree):
    _img(tree / "valid" / "fish" / "f.png")
    with pytest.raises(ValueError, match=r"valid: class folders 'fish' in .* \(train classes: "
                       r"'cat', 'dog'\)"):  # fmt: skip
        items_from_folder(tree)


def test_loose_images_in_train(tree):
    _img(tree / "train" / "loose.png")
    with pytest.raises(ValueError, match="lie directly in"):
        items_from_folder(tree)


def test_from_name_re(tmp_path):
    files = [_img(tmp_path / f"{c}_{i}.jpg") for c in ("Abyssinian", "pug") for i in range(5)]
    s = items_from_name_re(tmp_path, files, r"/([^/]+)_\d+.jpg$", valid_pct=0.2, seed=0)
    assert s.classes == ["Abyssinian", "pug"]
    assert len(s.valid_items) == 2 and len(s.train_items) == 8
    for p, y in zip(s.train_items + s.valid_items, s.train_labels + s.valid_labels, strict=True):
        assert p.name.startswith(s.classes[y] + "_")
    # relative names are taken relative to path; a compiled pattern works too
    rel = [f.name for f in files]
    assert items_from_name_re(tmp_path, rel, re.compile(r"/([^/]+)_\d+.jpg$"), seed=0) == s


def test_from_name_re_with_a_relative_path(tmp_path, monkeypatch):
    """The lesson's code with a relative folder: get_image_files(Path('pets')) gives names
    that already start with 'pets/' (fastai keeps them as given); and run inside the folder,
    the Pets pattern (which wants a '/' before the class) still finds the class."""
    (tmp_path / "pets").mkdir()
    for c in ("Abyssinian", "pug"):
        for i in range(5):
            _img(tmp_path / "pets" / f"{c}_{i}.jpg")
    pat = r"/([^/]+)_\d+.jpg$"
    want = items_from_name_re(tmp_path / "pets", get_image_files(tmp_path / "pets"), pat, seed=0)
    monkeypatch.chdir(tmp_path)
    path = Path("pets")
    s = items_from_name_re(path, get_image_files(path), pat, seed=0)
    assert s.train_items[0] == Path("pets") / want.train_items[0].name
    assert (s.classes, s.train_labels, s.valid_labels) == (
        want.classes, want.train_labels, want.valid_labels,
    )  # fmt: skip
    monkeypatch.chdir(tmp_path / "pets")
    s = items_from_name_re(Path("."), get_image_files(Path(".")), pat, seed=0)
    assert s.classes == ["Abyssinian", "pug"] and s.train_labels == want.train_labels
    # where both exist, the name under path wins (names relative to path, as before)
    monkeypatch.chdir(tmp_path)
    _img(tmp_path / "pets" / "pug_9.jpg")
    _img(tmp_path / "pets" / "pets" / "pug_9.jpg")
    assert _resolve_fnames(path, ["pets/pug_9.jpg"]) == [Path("pets/pets/pug_9.jpg")]


def test_from_name_re_non_matching_file_names_file_and_pattern(tmp_path):
    files = [_img(tmp_path / "cat_1.jpg"), _img(tmp_path / "weird.jpg")]
    with pytest.raises(ValueError, match="does not match file") as e:
        items_from_name_re(tmp_path, files, r"/([^/]+)_\d+.jpg$")
    assert r"pat: the pattern '/([^/]+)_\d+.jpg$'" in str(e.value)
    assert f"'{(tmp_path / 'weird.jpg').as_posix()}'" in str(e.value)
    with pytest.raises(ValueError, match="with a group"):
        items_from_name_re(tmp_path, files, r"\d+")
    with pytest.raises(ValueError, match="pat: expected a regular expression"):
        items_from_name_re(tmp_path, files, "(")


def test_fnames_errors(tmp_path):
    with pytest.raises(ValueError, match="fnames: expected at least one file"):
        items_from_name_re(tmp_path, [], r"(.)")
    with pytest.raises(MissingPathError, match="fnames: 1 of 1 files do not exist"):
        items_from_name_re(tmp_path, ["nope_1.jpg"], r"(.)")
    with pytest.raises(TypeError, match="fnames: expected a list"):
        items_from_name_re(tmp_path, "x.jpg", r"(.)")


def test_fnames_not_a_list_says_so(tmp_path):
    """A str or Path given as fnames was iterated (its characters: '50 of 50 files do not
    exist (e.g. /, ...)'), a folder was 'not iterable'."""
    f = _img(tmp_path / "pug_1.jpg")
    hint = r"fnames: expected a list of image files \(get_image_files\(path\) makes one\), got"
    with pytest.raises(TypeError, match=f"{hint} the single name '{re.escape(str(f))}'"):
        items_from_name_re(tmp_path, str(f), r"(.)")
    with pytest.raises(TypeError, match=f"{hint} the single name"):
        items_from_lists(tmp_path, f, ["pug"])
    with pytest.raises(TypeError, match=f"{hint} the folder '{re.escape(str(tmp_path))}'"):
        items_from_name_func(tmp_path, tmp_path, lambda p: "pug")
    with pytest.raises(TypeError, match=f"{hint} int"):
        items_from_name_re(tmp_path, 3, r"(.)")
    with pytest.raises(TypeError, match="fnames: expected file names .*got None at position 1"):
        items_from_lists(tmp_path, [f, None], ["a", "b"])


@pytest.mark.parametrize("path", [None, 5])
def test_path_not_a_path_is_named(tmp_path, path):
    f = _img(tmp_path / "pug_1.jpg")
    msg = f"path: expected a folder \\(a str or Path\\), got {path}"
    for call in (
        lambda: items_from_folder(path),
        lambda: items_from_folder(path, valid_pct=0.2),
        lambda: get_image_files(path),
        lambda: items_from_name_re(path, [f], r"(.)"),
        lambda: items_from_lists(path, [f], ["pug"]),
    ):
        with pytest.raises(TypeError, match=msg):
            call()


def test_from_name_func(tmp_path):
    files = [_img(tmp_path / f"{'Cat' if i % 2 else 'dog'}{i}.png") for i in range(10)]
    s = items_from_name_func(tmp_path, files, lambda p: p.name[0].isupper(), seed=3)
    assert s.classes == ["False", "True"]
    for p, y in zip(s.train_items, s.train_labels, strict=True):
        assert s.classes[y] == str(p.name[0].isupper())
    with pytest.raises(ValueError, match="label_func: missing label \\(None\\) for file .*dog0"):
        items_from_name_func(tmp_path, files, lambda p: None)
    with pytest.raises(ValueError, match="label_func: empty label '' for file .*dog0"):
        items_from_name_func(tmp_path, files, lambda p: "")
    with pytest.raises(TypeError, match="label_func: expected a callable"):
        items_from_name_func(tmp_path, files, "cat")
    with pytest.raises(IndexError) as failed:  # the user's error, told which file raised it
        items_from_name_func(tmp_path, files, lambda p: "ab"[int(p.stem[-1]) * 2])
    assert failed.value.__notes__ == [f"label_func raised this for file {files[1].as_posix()!r}"]


def test_from_lists(tmp_path):
    files = [_img(tmp_path / f"{i}.png") for i in range(10)]
    labels = ["b", "a"] * 5
    s = items_from_lists(tmp_path, files, labels, valid_pct=0.5, seed=0)
    assert s.classes == ["a", "b"]
    lookup = dict(zip(files, labels, strict=True))
    for p, y in zip(s.train_items + s.valid_items, s.train_labels + s.valid_labels, strict=True):
        assert lookup[p] == s.classes[y]
    with pytest.raises(ValueError, match="labels: expected 10 labels"):
        items_from_lists(tmp_path, files, labels[:-1])


def test_labels_as_tensor_or_array_are_their_values(tmp_path):
    """torch.tensor labels gave classes 'tensor(0)', 'tensor(1)'."""
    files = [_img(tmp_path / f"{i}.png") for i in range(10)]
    values = [3, 1] * 5
    want = items_from_lists(tmp_path, files, values, valid_pct=0.5, seed=0)
    assert want.classes == ["1", "3"]
    for labels in (torch.tensor(values), np.array(values), [np.int64(v) for v in values],
                   [torch.tensor(v) for v in values]):  # fmt: skip
        assert items_from_lists(tmp_path, files, labels, valid_pct=0.5, seed=0) == want
    with pytest.raises(ValueError, match=r"labels: expected one label per file \(1-d\), got "
                       r"shape \(10, 2\)"):  # fmt: skip
        items_from_lists(tmp_path, files, torch.zeros(10, 2))


@pytest.mark.parametrize(
    ("bad", "said"),
    [(None, r"missing label \(None\)"), (float("nan"), r"missing label \(nan\)"),
     ("", "empty label ''"), ("  ", "empty label '  '")],
)  # fmt: skip
def test_missing_or_empty_label_names_the_file_and_the_argument(tmp_path, bad, said):
    """A None label became the class 'None', a blank one the class ''."""
    files = [_img(tmp_path / f"{i}.png") for i in range(4)]
    with pytest.raises(ValueError, match=f"labels: {said} for file '.*/2.png'"):
        items_from_lists(tmp_path, files, ["a", "b", bad, "a"])


@pytest.mark.parametrize(
    ("bad", "said"),
    [(0.1667, "got the float label 0.1667 .*regression"), (np.float32(2.5), "float label 2.5"),
     (torch.tensor(0.25), "float label 0.25"), (float("inf"), "float label inf"),
     (["a", "b"], r"got the list \['a', 'b'\] .*multi-label"), ((10.0, 24.0), "tuple")],
)  # fmt: skip
def test_float_and_several_labels_are_refused_not_made_classes(tmp_path, bad, said):
    """A float column (a regression target) became one class per value, a list of labels
    (multi-label) or a tuple (a point) one class per distinct repr, and trained silently."""
    files = [_img(tmp_path / f"{i}.png") for i in range(4)]
    with pytest.raises(ValueError, match=f"labels: .*{said}"):
        items_from_lists(tmp_path, files, ["a", "b", bad, "a"])
    with pytest.raises(ValueError, match=f"label_func: .*{said}"):
        items_from_name_func(tmp_path, files, lambda p: bad if p.name == "2.png" else "a")


def test_whole_floats_stay_classes_as_in_fastai(tmp_path):
    files = [_img(tmp_path / f"{i}.png") for i in range(4)]
    split = items_from_lists(tmp_path, files, [1.0, 2.0, 1.0, 2.0], valid_pct=0.5)
    assert split.classes == ["1.0", "2.0"]


def test_pandas_missing_values_are_missing_labels(tmp_path):
    """pandas' nullable columns (Int64, string) hold pd.NA, datetimes NaT: they became the
    classes '<NA>' and 'NaT'."""
    pd = pytest.importorskip("pandas")
    files = [_img(tmp_path / f"{i}.png") for i in range(4)]
    for labels, said in (
        (pd.array([1, 2, None, 1], dtype="Int64"), "<NA>"),
        (pd.array(["a", "b", None, "a"], dtype="string"), "<NA>"),
        (pd.Series(["a", "b", pd.NaT, "a"], dtype=object), "NaT"),
    ):
        with pytest.raises(
            ValueError, match=f"labels: missing label \\({said}\\) for file '.*/2.png'"
        ):
            items_from_lists(tmp_path, files, labels)


def test_labels_not_a_list(tmp_path):
    files = [_img(tmp_path / f"{i}.png") for i in range(4)]
    with pytest.raises(TypeError, match="labels: expected a list of labels .*got None"):
        items_from_lists(tmp_path, files, None)


def test_empty_label_from_the_pattern(tmp_path):
    files = [_img(tmp_path / f"{c}_{i}.jpg") for c in ("a", "b") for i in range(3)]
    with pytest.raises(ValueError, match="pat: empty label '' for file '.*/a_0.jpg'"):
        items_from_name_re(tmp_path, files, r"/(\d*)[ab]_\d+.jpg$")


def test_csv_blank_label_and_binary_file(tmp_path):
    """A blank CSV label became the class ''; a CSV of binary garbage raised
    UnicodeDecodeError naming neither the file nor the argument."""
    for i in range(4):
        _img(tmp_path / f"{i}.png")
    (tmp_path / "labels.csv").write_text("\ufeffname,label\n0.png,a\n1.png,b\n2.png,\n3.png,a\n")
    names, labels = read_labels_csv(tmp_path / "labels.csv", "name", "label")
    assert names == ["0.png", "1.png", "2.png", "3.png"]  # the byte-order mark is no name
    with pytest.raises(ValueError, match="label_col: empty label '' for file '.*/2.png'"):
        items_from_table(tmp_path, names, labels)
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(ValueError, match=f"csv_labels: expected a UTF-8 CSV file .*"
                       f"'{re.escape(str(garbage))}' is not one"):  # fmt: skip
        read_labels_csv(garbage)


def test_random_split_partition_and_determinism():
    tr, va = random_split(100, 0.25, seed=7)
    assert len(va) == 25 and sorted(tr + va) == list(range(100))
    assert (tr, va) == random_split(100, 0.25, seed=7)
    assert va != random_split(100, 0.25, seed=8)[1]
    with pytest.raises(TypeError, match="seed: expected a non-negative int"):
        random_split(10, 0.2, seed=-1)
    # the rules are fastai's: v2 RandomSplitter (torch), v1 split_by_rand_pct (numpy)
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(7)).tolist()
    assert (tr, va) == (perm[25:], perm[:25])
    valid = np.random.RandomState(7).permutation(100)[:25].tolist()
    assert random_split(100, 0.25, 7, "v1") == (sorted(set(range(100)) - set(valid)), valid)
    with pytest.raises(ValueError, match="rule: expected one of"):
        random_split(10, 0.2, 0, "v3")
    with pytest.raises(ValueError, match="below 2\\*\\*32"):
        random_split(10, 0.2, 2**32, "v1")


def test_a_class_left_without_training_images_is_named(tmp_path):
    for i in range(6):
        _img(tmp_path / "cat" / f"c{i}.png")
    _img(tmp_path / "single" / "s0.png")
    seeds = {}
    for seed in range(20):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            split = items_from_folder(tmp_path, valid_pct=0.3, seed=seed)
        single_trains = split.classes.index("single") in split.train_labels
        seeds[seed] = (single_trains, [w for w in caught if "valid_pct" in str(w.message)])
    warned = [s for s, (trains, ws) in seeds.items() if ws]
    assert warned and all(not seeds[s][0] for s in warned)  # warned exactly when untrained
    assert all(seeds[s][0] for s in seeds if s not in warned)
    w = seeds[warned[0]][1][0]
    assert "every image of 1 class(es) in the validation set" in str(w.message)
    assert "'single' (1)" in str(w.message)
    assert w.filename == __file__  # the user's line, not the library's


def test_missing_valid_folder_suggests_the_one_there(tree):
    (tree / "valid").rename(tree / "val")
    (tree / "test").mkdir()
    with pytest.raises(
        MissingPathError, match=r"sub-folders: 'test', 'train', 'val'\); pass valid='val'"
    ):
        items_from_folder(tree)
    (tree / "val").rename(tree / "valid_set")
    with pytest.raises(MissingPathError, match=r"pass valid='test', or split one tree"):
        items_from_folder(tree)
    assert len(items_from_folder(tree, valid="valid_set").valid_items) == 3
    with pytest.raises(MissingPathError, match=r"pass train='train', or split"):
        items_from_folder(tree, train="nope", valid="valid_set")
    (tree / "test").rename(tree / "other")
    with pytest.raises(MissingPathError, match=r"name the folders with valid=, or split"):
        items_from_folder(tree)


def test_get_image_files_follows_folder_links_once_and_lists_broken_links(tmp_path):
    """As fastai's get_files (os.walk(followlinks=True)): a class folder that is a link is
    read (it was left out without a word), a link back up the tree does not loop, and a
    link to a missing file is listed (a pass names it unreadable)."""
    outside = tmp_path / "outside"
    linked = [_img(outside / f"l{i}.png") for i in range(2)]
    data = tmp_path / "data"
    cat = _img(data / "cat" / "c0.png")
    (data / "linked").symlink_to(outside, target_is_directory=True)
    (data / "cat" / "loop").symlink_to(data, target_is_directory=True)
    (data / "cat" / "gone.png").symlink_to(tmp_path / "missing.png")
    files = get_image_files(data)
    assert files == sorted(
        [cat, data / "cat" / "gone.png", *(data / "linked" / p.name for p in linked)]
    )
    split = items_from_folder(data, valid_pct=0.25, seed=0)
    assert split.classes == ["cat", "linked"]


def test_a_folder_reached_under_two_names_is_listed_under_both(tmp_path):
    """A link to a sibling class folder took that class's images ("each real folder once":
    whichever name the walk met first won, and 'cat' vanished). As fastai, both names list
    them; a link to an ancestor (a loop) is still not followed."""
    data = tmp_path / "data"
    cats = [_img(data / "cat" / f"c{i}.png") for i in range(3)]
    coffee = [_img(data / "coffee" / f"k{i}.png") for i in range(2)]
    (data / "a_kitty").symlink_to(data / "cat", target_is_directory=True)
    (data / "zz_espresso").symlink_to("coffee", target_is_directory=True)
    (data / "coffee" / "up").symlink_to(data, target_is_directory=True)  # a loop
    (data / "cat" / "self").symlink_to(".", target_is_directory=True)  # a loop too
    files = get_image_files(data)
    assert files == sorted(
        [*cats, *coffee, *(data / "a_kitty" / p.name for p in cats),
         *(data / "zz_espresso" / p.name for p in coffee)]
    )  # fmt: skip
    split = items_from_folder(data, valid_pct=0.25, seed=0)
    labels = [split.classes[i] for i in split.train_labels + split.valid_labels]
    assert {c: labels.count(c) for c in split.classes} == {
        "a_kitty": 3, "cat": 3, "coffee": 2, "zz_espresso": 2
    }  # fmt: skip


def _pil_readers() -> dict[str, str]:
    """Extension -> Pillow format, for the formats this Pillow can open."""
    Image.init()
    return {e: f for e, f in Image.registered_extensions().items() if f in Image.OPEN}


def test_image_extensions_are_fastais_that_a_decoder_here_reads():
    """Derived, not guessed: every extension is one Pillow opens here or a HEIF one
    (TorchCodec's, with libheif), and every one of fastai's (mimetypes' image/*) that Pillow
    opens is listed, but for the metafiles Pillow draws only on Windows."""
    import mimetypes

    mimetypes.init()
    readers = _pil_readers()
    heif = {".heic", ".heif", ".heics", ".heifs", ".hif"}
    assert {e for e in IMAGE_EXTENSIONS if e not in readers} == heif
    fastais = {e.lower() for e, t in mimetypes.types_map.items() if t.startswith("image/")}
    assert {e for e in fastais if e in readers} - IMAGE_EXTENSIONS <= {".emf", ".wmf"}
    for e in (".jfif", ".jpe", ".avif", ".jpg", ".png"):
        assert e in IMAGE_EXTENSIONS


def test_jfif_jpe_avif_and_heic_files_are_found_and_checked(tmp_path):
    """.jfif (Chrome, Windows), .jpe and .avif were never listed: a class of .jfif files
    vanished without a word. A .heic that cannot be decoded is listed too, and named by
    verify_images as unreadable, rather than left out."""
    rng = np.random.default_rng(0)
    px = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    made = {}
    for cls, ext, fmt in (("a", ".jpg", "JPEG"), ("b", ".jpe", "JPEG"), ("c", ".jfif", "JPEG"),
                          ("d", ".avif", "AVIF"), ("e", ".JFIF", "JPEG")):  # fmt: skip
        for i in range(2):
            made[cls, i] = tmp_path / cls / f"{i}{ext}"
            made[cls, i].parent.mkdir(exist_ok=True)
            Image.fromarray(px).save(made[cls, i], format=fmt)
    broken = tmp_path / "e" / "phone.heic"
    broken.write_bytes(b"not a heic file")
    assert get_image_files(tmp_path) == sorted([*made.values(), broken])
    split = items_from_folder(tmp_path, valid_pct=0.3, seed=0)
    assert split.classes == ["a", "b", "c", "d", "e"]
    for path in made.values():
        assert to_rgb(path).shape == (3, 16, 16)
    assert verify_images(tmp_path) == [broken]


def _warned(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught]


def test_valid_pct_warns_about_class_folders_without_images(tmp_path):
    """The train/ + valid/ layout warned about a class folder without images; valid_pct
    dropped it silently. 'models' (where a Learner saves under its path) is no class."""
    for cls in ("a", "b"):
        for i in range(3):
            _img(tmp_path / cls / f"{i}.png")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("no images")
    (tmp_path / "d" / "deeper").mkdir(parents=True)
    (tmp_path / "models").mkdir()
    (tmp_path / ".hidden").mkdir()
    msgs = _warned(lambda: items_from_folder(tmp_path, valid_pct=0.3, seed=0))
    assert msgs == [
        f"path: ignored 2 class folders that hold no image files, as fastai does (the classes "
        f"are the labels of the images found): 2 in {str(tmp_path)!r} ('c', 'd')"
    ]
    from fastcore_ext.data import ImageDataLoaders

    kw = dict(valid_pct=0.3, seed=0, item_tfms=None, bs=2, num_workers=0)
    msgs = _warned(lambda: ImageDataLoaders.from_folder(tmp_path, **kw))
    assert any("path: ignored 2 class folders" in m for m in msgs)


def test_valid_pct_warns_when_a_label_comes_from_several_top_folders(tmp_path):
    """cat/2023, dog/2023 (a phone export): fastai's parent_label makes '2023' one class of
    cats and dogs; one warning names the label and its folders and how to label by the top
    folder. train/cat and valid/cat (a split tree pooled with valid_pct) is no such case."""
    for top, subs in (("cat", ("2023", "2024")), ("dog", ("2023",)), ("owl", ("2024",))):
        for sub in subs:
            _img(tmp_path / "phone" / top / sub / "x.png")
            _img(tmp_path / "phone" / top / sub / "y.png")
    msgs = _warned(lambda: items_from_folder(tmp_path / "phone", valid_pct=0.3, seed=0))
    assert len(msgs) == 1
    assert "2 label(s) come from several top folders" in msgs[0]
    assert "'2023' from 'cat', 'dog'; '2024' from 'cat', 'owl'" in msgs[0]
    assert "get_y=lambda p: p.relative_to(path).parts[0]" in msgs[0]
    with pytest.warns(UserWarning, match="come from several top folders"):
        split = items_from_folder(tmp_path / "phone", valid_pct=0.3, seed=0)
    assert split.classes == ["2023", "2024"]  # fastai's labels, kept
    for s in ("train", "valid"):
        for cls in ("cat", "dog"):
            _img(tmp_path / "pooled" / s / cls / "x.png")
            _img(tmp_path / "pooled" / s / cls / "y.png")
    assert _warned(lambda: items_from_folder(tmp_path / "pooled", valid_pct=0.3, seed=0)) == []


def test_valid_pct_warns_of_image_folders_inside_a_class_folder(tmp_path):
    """grass/*.jpg and grass/sub/subsub/nested.jpg: fastai's parent_label makes 'subsub' a
    class of one image, silently (the warning above is for a name under several tops)."""
    for k in range(3):
        _img(tmp_path / "grass" / f"g{k}.png")
        _img(tmp_path / "brick" / f"b{k}.png")
    _img(tmp_path / "grass" / "sub" / "subsub" / "nested.png")
    _img(tmp_path / "brick" / "2023" / "b.png")
    msgs = _warned(lambda: items_from_folder(tmp_path, valid_pct=0.3, seed=0))
    assert msgs[0].startswith("path: 2 folder(s) holding images lie inside")
    assert "'2023' (brick/2023), 'subsub' (grass/sub/subsub)" in msgs[0]


def test_number_labels_are_classes_in_numeric_order(tmp_path):
    """Labels 0-11 from a CSV, a DataFrame-like list or a label_func became the classes '0',
    '1', '10', '11', '2', ...: class i was not label i (fastai's vocab is 0, 1, ..., 11).
    Folder names stay text, sorted as text, as fastai's."""
    files = [_img(tmp_path / f"{i}.png") for i in range(24)]
    numbers = [i % 12 for i in range(24)]
    in_order = [str(i) for i in range(12)]
    assert items_from_lists(tmp_path, files, numbers).classes == in_order
    assert items_from_lists(tmp_path, files, np.array(numbers)).classes == in_order
    by_func = items_from_name_func(tmp_path, files, lambda p: int(p.stem) % 12)
    assert by_func.classes == in_order
    # whole floats (others are refused: a regression target)
    assert items_from_lists(tmp_path, files, [float(x) for x in numbers]).classes[:4] == [
        "0.0", "1.0", "2.0", "3.0"
    ]  # fmt: skip
    assert items_from_lists(tmp_path, files, [str(x) for x in numbers]).classes[:4] == [
        "0",
        "1",
        "10",
        "11",
    ]  # text labels: text order, as fastai sorts strings
    rows = "".join(f"{i}.png,{y}\n" for i, y in enumerate(numbers))
    (tmp_path / "labels.csv").write_text("name,label\n" + rows)
    names, labels = read_labels_csv(tmp_path / "labels.csv")
    assert labels == numbers  # read as pandas (fastai's from_csv) reads the column: ints
    assert items_from_table(tmp_path, names, labels).classes == in_order
    (tmp_path / "mixed.csv").write_text("name,label\n0.png,3\n1.png,cat\n")
    assert read_labels_csv(tmp_path / "mixed.csv")[1] == ["3", "cat"]


def test_a_number_given_as_int_and_as_float_is_one_class(tmp_path):
    """Labels 1 and 1.0 (gathered from JSON and a table, say) were the two classes '1' and
    '1.0': one real class trained as two competing ones, silently; fastai's set of labels
    holds one of them. Now one class named as the int, in the lists, table and label_func
    paths, and test_dl(with_labels=True) finds a 1.0 label's class."""
    files = [_img(tmp_path / f"{i}.png") for i in range(12)]
    mixed = [[1, 1.0, 2, 10][i % 4] for i in range(12)]
    split = items_from_lists(tmp_path, files, mixed)
    assert split.classes == ["1", "2", "10"]
    labels = [split.classes[y] for y in split.train_labels + split.valid_labels]
    assert labels.count("1") == 6
    assert items_from_table(tmp_path, files, np.array(mixed, dtype=object)).classes == [
        "1", "2", "10"
    ]  # fmt: skip
    by_func = items_from_name_func(tmp_path, files, lambda p: mixed[int(p.stem)])
    assert by_func.classes == ["1", "2", "10"]
    assert labels_of(files[:2], lambda p: mixed[int(p.stem)], by_func.classes) == [0, 0]
    # floats alone keep their text (fastai's vocab shows 1.0), ints alone theirs
    floats = items_from_lists(tmp_path, files, [float(y) for y in mixed])
    assert floats.classes == ["1.0", "2.0", "10.0"]
    # values compared exactly: two ids a float cannot tell apart stay two classes (the review)
    big = [2**53, 2**53 + 1] * 6
    assert items_from_lists(tmp_path, files, big).classes == [str(2**53), str(2**53 + 1)]
    assert items_from_lists(tmp_path, files, [10**16, 1e16] * 6).classes == [str(10**16)]
    np_mixed = [np.int64(3), np.float32(3.0), torch.tensor(4), 4.0] * 3
    assert items_from_lists(tmp_path, files, np_mixed).classes == ["3", "4"]


def test_a_table_names_files_under_its_path_only_and_says_why_one_is_missing(tmp_path, monkeypatch):
    """from_df / from_csv names are path/folder/name, as fastai's, whatever the working
    folder (a name missing there was taken from the working folder); the error names fn_col
    and, when the names repeat path's last folder, says so."""
    for i in range(4):
        _img(tmp_path / "flat" / f"x{i}.png")
    monkeypatch.chdir(tmp_path)
    names = [f"flat/x{i}.png" for i in range(4)]
    with pytest.raises(MissingPathError) as e:
        items_from_table(tmp_path / "flat", names, ["a", "b"] * 2)
    msg = str(e.value)
    assert msg.startswith("fn_col: 4 of 4 files do not exist")
    assert "the names start with 'flat/', the folder they are taken in: pass its parent" in msg
    assert items_from_table(tmp_path, names, ["a", "b"] * 2, valid_pct=0.5).classes == ["a", "b"]
    # a folder= that does not exist is named (fn_col was blamed for every file)
    with pytest.raises(
        MissingPathError,
        match=r"folder: expected the folder of path holding "
        r"the images, '.*images' does not exist \(the folders there: 'flat'\)",
    ):
        items_from_table(tmp_path, [f"x{i}.png" for i in range(4)], ["a", "b"] * 2, "images")
    # a list of names (fnames) may still be relative to the working folder, as fastai's lists
    assert (
        len(items_from_lists(tmp_path / "flat", names, ["a", "b"] * 2, valid_pct=0.5).train_items)
        == 2
    )


def test_a_name_in_another_unicode_normalization_is_pointed_at(tmp_path):
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "café_0.png")
    _img(tmp_path / decomposed)
    with pytest.raises(MissingPathError, match="exists under another Unicode normalization"):
        items_from_table(tmp_path, [unicodedata.normalize("NFC", "café_0.png")], ["a"])


def test_a_tilde_folder_says_it_is_not_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _img(tmp_path / "pics" / "a" / "x.png")
    with pytest.raises(MissingPathError, match=r"'~' is not expanded in a path: Path\('~/pics'\)"):
        get_image_files("~/pics")
    with pytest.raises(MissingPathError, match="'~' is not expanded"):
        items_from_folder("~/pics", valid_pct=0.5)


def test_files_named_by_several_rows_are_warned_of(tmp_path):
    """A DataFrame concatenated with itself: the same image in training and validation (and
    with conflicting labels, two classes at once); fastai says nothing."""
    files = [_img(tmp_path / f"{i}.png") for i in range(6)]
    with pytest.warns(UserWarning, match=r"fn_col: 6 file\(s\) are named more than once"):
        items_from_table(tmp_path, [f.name for f in files] * 2, ["a", "b"] * 6)
    with pytest.warns(UserWarning, match=r"fnames: 1 file\(s\) are named more than once"):
        items_from_lists(tmp_path, files + files[:1], ["a", "b"] * 3 + ["a"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        items_from_lists(tmp_path, files, ["a", "b"] * 3)
