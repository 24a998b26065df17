"""ClassificationInterpretation: what a trained classifier gets wrong, from one inference pass.

    interp = ClassificationInterpretation.from_learner(learn)
    interp.plot_top_losses(9, figsize=(15, 11))
    interp.most_confused(min_val=2)
    interp.confusion_matrix(); interp.plot_confusion_matrix()
    interp.print_classification_report()

`from_learner` runs `Learner.get_preds(with_loss=True)` once and keeps, for the N items of
the data set, the probabilities float32 [N, C], the predicted classes, the targets, the
per-item losses and the items' indices in the data set, all on the CPU. Every method works
from that cache; images are read from the data set only for the few items a plot shows.

Memory: O(N * C) for the probabilities, O(N) for the rest, O(C * C) for the confusion
matrix, which is counted with one bincount over N codes (never a C x C x N tensor, which
fastai builds: 37 classes x 20,000 items would be 27 million elements per comparison).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from fastcore_ext import ranks
from fastcore_ext.checks import check_bool, check_int, int_or_none, real_or_none
from fastcore_ext.inference import MissingRowsWarning, ds_idx_set
from fastcore_ext.plots import check_figsize, finish, grid_cells, image_grid, new_figure
from fastcore_ext.warn import warn_user

__all__ = ["ClassificationInterpretation", "ClassificationReport", "Interpretation"]

MIN_CELL_FONT = 4.5  # points: smaller numbers in confusion-matrix cells are not drawn


@dataclass(frozen=True)
class ClassificationReport:
    """Per-class precision, recall, f1 and support (float64 / int64 arrays [C]) and their
    averages: macro (unweighted mean over classes) and weighted (by support). A class that is
    never predicted has precision 0; one without items has recall 0 (and f1 0): no NaN.
    `str(report)` is the aligned text table."""

    classes: list[str]
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    accuracy: float
    macro: tuple[float, float, float]
    weighted: tuple[float, float, float]

    def __str__(self) -> str:
        width = max(len("weighted avg"), *(len(c) for c in self.classes))
        head = f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'f1-score':>9}  {'support':>9}"
        lines = [head, ""]
        for k, name in enumerate(self.classes):
            lines.append(
                f"{name:>{width}}  {self.precision[k]:>9.4f}  {self.recall[k]:>9.4f}  "
                f"{self.f1[k]:>9.4f}  {int(self.support[k]):>9d}"
            )
        total = int(self.support.sum())
        lines.append("")
        lines.append(f"{'accuracy':>{width}}  {'':>9}  {'':>9}  {self.accuracy:>9.4f}  {total:>9d}")
        for name, (p, r, f) in (("macro avg", self.macro), ("weighted avg", self.weighted)):
            lines.append(f"{name:>{width}}  {p:>9.4f}  {r:>9.4f}  {f:>9.4f}  {total:>9d}")
        return "\n".join(lines)


class ClassificationInterpretation:
    """Predictions of a classifier on one data set, and views of its mistakes.

    Build it with `from_learner(learn)`; the constructor takes the cached tensors directly:
      learn: the Learner (its data gives class names and images, its path the plot folder).
      probs: float Tensor[N, C], the probability of each class for each item.
      targets: int Tensor[N] in [0, C).
      losses: float Tensor[N], the per-item loss.
      ds_type: 'valid' or 'train', the data set the items come from; None when they come
        from `dl`.
      idxs: int Tensor[N], each row's index in that data set (default 0..N-1).
      dl: the loader the rows came from instead of a data set of the learner's data (its
        `dataset` gives plot_top_losses its images).

    Attributes: probs (float [N, C]), pred_class (their argmax, int64 [N]), targets, losses,
    idxs (CPU tensors), classes (list[str]), c, ds_type, dl; fastai v1's names y_true and
    preds (the probabilities, as v1's) too, v2's vocab and targs.
    """

    def __init__(
        self,
        learn: Any,
        probs: torch.Tensor,
        targets: torch.Tensor,
        losses: torch.Tensor,
        ds_type: str | None = "valid",
        idxs: torch.Tensor | None = None,
        dl: Any = None,
    ) -> None:
        if not (ds_type in ("valid", "train") or (ds_type is None and dl is not None)):
            raise ValueError(
                f"ds_type should be 'valid' or 'train' (or None with a dl), got {ds_type!r}"
            )
        for name, t in (("probs", probs), ("targets", targets), ("losses", losses)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} should be a torch.Tensor, got {type(t).__name__}")
        if probs.dim() != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
            raise ValueError(
                f"probs should be Tensor[N, C] with N, C > 0, got {tuple(probs.shape)}"
            )
        n, c = probs.shape
        if targets.shape != (n,) or targets.dtype.is_floating_point or targets.is_complex():
            raise ValueError(
                f"targets should be an int Tensor[{n}] (one class index per row of probs), got "
                f"{targets.dtype} {tuple(targets.shape)}"
            )
        if losses.shape != (n,):
            raise ValueError(f"losses should be Tensor[{n}], got {tuple(losses.shape)}")
        targets = targets.detach().cpu().long()
        if targets.min() < 0 or targets.max() >= c:
            raise ValueError(
                f"targets should be class indices in [0, {c}), got values in "
                f"[{int(targets.min())}, {int(targets.max())}]"
            )
        if idxs is None:
            idxs = torch.arange(n)
        elif not isinstance(idxs, torch.Tensor) or idxs.shape != (n,):
            raise ValueError(f"idxs should be an int Tensor[{n}] or None, got {idxs!r}")
        self.learn = learn
        self.data = getattr(learn, "data", None)
        self.ds_type = ds_type
        self.dl = dl
        self.probs = probs.detach().float().cpu()
        self.targets = targets
        self.losses = losses.detach().float().cpu()
        self.idxs = idxs.detach().cpu().long()
        self.pred_class = self.probs.argmax(dim=1)
        self.c = c
        classes = getattr(self.data, "classes", None)
        if classes is not None and len(classes) != c:
            raise ValueError(f"the data's classes ({len(classes)}) do not match probs' {c} columns")
        self.classes: list[str] = (
            [str(k) for k in classes] if classes is not None else [str(k) for k in range(c)]
        )
        self._cm: np.ndarray | None = None

    @classmethod
    def from_learner(
        cls,
        learn: Any,
        ds_idx: int | str | None = None,
        dl: Iterable[Any] | None = None,
        act: Any = None,
        tta: bool = False,
        *,
        ds_type: str | None = None,
    ) -> ClassificationInterpretation:
        """One inference pass of `learn` (`Learner.get_preds(with_loss=True, act=act)`: eval
        mode, items in data set order) and the cache of its results, over:

        - fastai v2's `ds_idx`: 1 the validation set (the default), 0 the training set (its
          items in order, through the training transforms: see get_preds);
        - or fastai v1's `ds_type`: 'valid' or 'train' (DatasetType.Valid / .Train; also
          taken as the second positional argument, as v1 code passes it); ds_idx and
          ds_type together must name the same set;
        - or `dl`, any loader of labelled (x, y) batches, e.g. fastai v2's
          `dls.test_dl(files, with_labels=True)`: rows in its order (a shuffled loader of
          this library's is put back in data set order), plot_top_losses' images from its
          `dataset`. A data set given beside it is an error (fastai ignores ds_idx then).

        act: applied to the outputs instead of softmax. tta: fastai v1's, the predictions
        and losses of `learn.TTA(ds_type=..., with_loss=True)` instead (no act, no dl)."""
        ds_type = _data_set(ds_idx, ds_type, dl)
        check_bool("tta", tta)
        get_preds = getattr(learn, "get_preds", None)
        if get_preds is None:
            raise TypeError(
                f"learn should be a Learner (with get_preds), got {type(learn).__name__}"
            )
        if tta and act is not None:
            raise ValueError("act and tta=True exclude each other (TTA gives softmax probs)")
        if tta and dl is not None:
            raise ValueError("dl and tta=True exclude each other (TTA runs on a data set)")
        if dl is not None:
            probs, targets, losses = get_preds(dl=dl, with_loss=True, act=act)
            return cls(learn, probs, targets, losses, ds_type=None, dl=dl)
        with warnings.catch_warnings():  # the rows are mapped to their items below
            warnings.simplefilter("ignore", MissingRowsWarning)
            if tta:
                probs, targets, losses = learn.TTA(ds_type=ds_type, with_loss=True)
            else:
                probs, targets, losses = get_preds(ds_type=ds_type, with_loss=True, act=act)
        idxs = _kept_items(getattr(learn, "data", None), ds_type, len(targets))
        if idxs is not None:
            n_items = len(getattr(learn.data, f"{ds_type}_ds"))
            warn_user(
                f"ClassificationInterpretation: {n_items - len(idxs)} of the {n_items} {ds_type} "
                f"images are unreadable and have no row: top_losses gives data set indices "
                f"({ds_type}_ds[i], as plot_top_losses shows them), while probs, preds, "
                f"targets and losses hold the {len(idxs)} readable items' rows (interp.idxs "
                f"gives each row's data set index). Build the data with skip_bad=True to drop "
                f"unreadable files, so that rows and data set indices agree",
                MissingRowsWarning,
            )
        return cls(learn, probs, targets, losses, ds_type=ds_type, idxs=idxs)

    # ---- fastai v1 names ------------------------------------------------------------------
    @property
    def y_true(self) -> torch.Tensor:
        """The targets (fastai v1's name)."""
        return self.targets

    @property
    def targs(self) -> torch.Tensor:
        """The targets (fastai v2's name)."""
        return self.targets

    @property
    def preds(self) -> torch.Tensor:
        """The probabilities, float [N, C] (fastai v1's name: its `interp.preds` are the
        activations, `pred_class` their argmax)."""
        return self.probs

    @property
    def vocab(self) -> list[str]:
        """The class names (fastai v2's name)."""
        return self.classes

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} {self.ds_type or 'dl'} items, {self.c} classes, "
            f"error rate {self.error_rate():.4f})"
        )

    def __getitem__(self, idxs: int | list[int] | range | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """fastai v2's ``interp[idxs]``: (inputs, probs, targets, decoded, losses) of the
        items at data set indices `idxs` (an int, negative from the end, a list, range or slice
        of them, or an int Tensor, e.g. the indices `top_losses` gives), in that order.
        inputs: the images through the validation transform as the model sees them (float
        [n, 3, S, S], normalized, on the CPU); probs, targets, decoded (the predicted class)
        and losses: this interpretation's rows of them (fastai runs the model again on the
        items; here they are the cached results of the same pass)."""
        rows = self._rows(idxs)
        raw = self._raw(self.idxs[rows].tolist())
        data = self.data
        if hasattr(data, "preprocess") and all(_is_rgb_uint8(x) for x in raw):
            inputs = data.preprocess(raw).float().cpu()
        else:  # a data set of the user's (dl=): as stored
            inputs = torch.stack(raw)
        return (
            inputs,
            self.probs[rows],
            self.targets[rows],
            self.pred_class[rows],
            self.losses[rows],
        )

    # ---- numbers -------------------------------------------------------------------------
    def error_rate(self) -> float:
        """Fraction of items whose predicted class is not the target."""
        return float((self.pred_class != self.targets).float().mean())

    def top_losses(
        self, k: int | None = None, largest: bool = True, items: bool = False
    ) -> tuple[Any, ...]:
        """The k largest (or smallest) per-item losses and the data set indices of their
        items, sorted (ties keep data set order). k None: all; k above N: all N.
        Returns (losses float32 [k], indices int64 [k]); with items=True (fastai v2's) also
        the data set's items at those indices (file paths), a list."""
        k = self._check_k(k)
        check_bool("largest", largest)
        check_bool("items", items)
        order = torch.sort(self.losses, descending=largest, stable=True).indices[:k]
        losses, idxs = self.losses[order], self.idxs[order]
        if not items:
            return losses, idxs
        stored = getattr(self._dataset(), "items", None)
        if stored is None:
            raise ValueError("items=True needs a data set with items (its files); this has none")
        return losses, idxs, [stored[i] for i in idxs.tolist()]

    def confusion_matrix(self) -> np.ndarray:
        """int64 array [C, C]: entry (a, p) counts the items of actual class a predicted as p
        (rows actual, columns predicted); it sums to N. One bincount over N codes."""
        if self._cm is None:
            codes = self.targets * self.c + self.pred_class
            self._cm = torch.bincount(codes, minlength=self.c * self.c).view(self.c, self.c).numpy()
        return self._cm.copy()

    def most_confused(self, min_val: float = 1) -> list[tuple[str, str, int]]:
        """The off-diagonal cells of the confusion matrix with at least `min_val` items (0:
        every pair of two classes; fastai's lists the diagonal too, as 0s), as (actual class,
        predicted class, count), by count descending; equal counts in order of the actual
        class's index, then the predicted class's index."""
        number = real_or_none(min_val)
        if number is None:
            raise TypeError(f"min_val should be a number, got {type(min_val).__name__} {min_val!r}")
        min_val = number
        if min_val < 0:
            raise ValueError(f"min_val should be >= 0 (a number of items), got {min_val}")
        cm = self.confusion_matrix()
        off = ~np.eye(len(cm), dtype=bool)  # min_val 0 lists no (c, c) pair, as fastai's does
        actual, predicted = np.nonzero((cm >= min_val) & off)  # row-major: (actual, predicted)
        counts = cm[actual, predicted]
        order = np.argsort(-counts, kind="stable")
        return [
            (self.classes[actual[i]], self.classes[predicted[i]], int(counts[i])) for i in order
        ]

    def classification_report(self) -> ClassificationReport:
        """Precision, recall, f1 and support per class with macro and weighted averages,
        computed from the confusion matrix (see ClassificationReport)."""
        cm = self.confusion_matrix().astype(np.float64)
        tp = np.diag(cm)
        support = cm.sum(axis=1)
        predicted = cm.sum(axis=0)
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
        n = support.sum()
        weights = support / n
        return ClassificationReport(
            classes=list(self.classes),
            precision=precision,
            recall=recall,
            f1=f1,
            support=support.astype(np.int64),
            accuracy=float(tp.sum() / n),
            macro=(float(precision.mean()), float(recall.mean()), float(f1.mean())),
            weighted=(
                float(weights @ precision),
                float(weights @ recall),
                float(weights @ f1),
            ),
        )

    def print_classification_report(self) -> None:
        """Print the classification report as an aligned table (rank 0 only, in a distributed
        run). Returns None, as fastai's: as a notebook cell's last line it shows the table
        once; `classification_report()` returns the numbers."""
        report = self.classification_report()
        if ranks.is_main_process():
            print(report)

    # ---- plots ---------------------------------------------------------------------------
    def plot_top_losses(
        self,
        k: int | list[int] | range = 9,
        figsize: tuple[float, float] | None = None,
        largest: bool = True,
        heatmap: bool = False,
        heatmap_thresh: int = 16,
        alpha: float = 0.6,
        cmap: str = "magma",
        *,
        show_text: bool = True,
        return_fig: bool = True,
        nrows: int | None = None,
        ncols: int | None = None,
    ) -> Figure | None:
        """A grid of the k items with the largest losses (smallest with largest=False), each
        titled 'prediction / actual' and 'loss / probability': of the actual class, as fastai
        v1's, or of the prediction, as fastai v2's, for v2's data (`ImageDataLoaders`,
        `fastai_version` 2). The grid:
        fastai v1's near-square one (ceil(sqrt(k)) columns), or fastai v2's nrows / ncols
        (`plots.image_grid`; with both, at most nrows * ncols items are shown). Images
        are read from the data set now and shown as the model sees them: the validation
        transform (data.preprocess) denormalized to [0, 1]; a data set without it is shown
        as stored (uint8 / 255). Items of the 'train' set are shown without augmentation.
        heatmap=True overlays, as fastai v1 does, where the body looked for the actual class
        (Grad-CAM, see `heatmaps`), in `cmap` at opacity `alpha`, on items whose body output
        has at least `heatmap_thresh` cells. Saved as 'top_losses.png'
        ('top_losses_smallest.png'). k above the number of items N: all N, with a warning
        (fastai's fails). k as a list or range (fastai v2's): those ranks of the sorted
        losses, 0 the largest (the smallest with largest=False): `plot_top_losses(range(9,
        18))` shows the next nine. fastai v1's show_text=False leaves the images untitled.
        Returns the Figure (None with v1's return_fig=False)."""
        cells = grid_cells(nrows, ncols)
        if isinstance(k, list | tuple | range):
            ranks = [self._check_rank(r) for r in k]
            if not ranks:
                raise ValueError("k: an empty list of ranks shows nothing")
            ranks = ranks[:cells] if cells is not None else ranks
            sorted_losses, sorted_idxs = self.top_losses(None, largest)
            losses, idxs = sorted_losses[ranks], sorted_idxs[ranks]
        else:
            asked = int_or_none(k)
            if asked is not None and asked > len(self):
                warn_user(
                    f"k: {k} items asked for and the interpretation holds {len(self)}; "
                    f"showing all {len(self)}"
                )
            k = self._check_k(k)
            losses, idxs = self.top_losses(min(k, cells) if cells is not None else k, largest)
        check_bool("heatmap", heatmap)
        check_bool("show_text", show_text)
        check_bool("return_fig", return_fig)
        number = real_or_none(alpha)
        if number is None or not 0 <= number <= 1:
            raise ValueError(f"alpha should be a number in [0, 1], got {alpha!r}")
        alpha = number
        cmap_obj = _colormap(cmap) if heatmap else None
        rows_of = {int(i): r for r, i in enumerate(self.idxs.tolist())}
        raw = self._raw(idxs.tolist())  # each item read once, for the images and the heatmaps
        images = self._images(raw)
        maps = None
        if heatmap:
            actual = [int(self.targets[rows_of[int(i)]]) for i in idxs.tolist()]
            maps = self._grad_cam(raw, actual, heatmap_thresh)
        v2 = getattr(self.data, "fastai_version", 1) == 2
        titles = []
        for i, loss in zip(idxs.tolist(), losses.tolist(), strict=True):
            r = rows_of[i]
            pred, actual = int(self.pred_class[r]), int(self.targets[r])
            prob = float(self.probs[r, pred if v2 else actual])
            titles.append(f"{self.classes[pred]} / {self.classes[actual]}\n{loss:.2f} / {prob:.2f}")
        fig, axes, fontsize = image_grid(len(titles), figsize, titles, (2.6, 2.8), nrows, ncols)
        for cell, ax in enumerate(axes):
            img = images[cell]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            if maps is not None and maps[cell] is not None:
                h, w = img.shape[:2]
                ax.imshow(
                    maps[cell], alpha=alpha, extent=(0, w, h, 0), interpolation="bilinear",
                    cmap=cmap_obj,
                )  # fmt: skip
            if show_text:
                ax.set_title(titles[cell], fontsize=fontsize)
        of = "prediction" if v2 else "actual"
        if show_text:
            fig.suptitle(f"prediction / actual\nloss / probability of {of}", fontsize=fontsize + 1)
        name = "top_losses" if largest else "top_losses_smallest"
        fig = finish(fig, name)
        return fig if return_fig else None

    def plot_confusion_matrix(
        self,
        normalize: bool = False,
        figsize: tuple[float, float] | None = None,
        cmap: str = "Blues",
        top: int | None = None,
        norm_dec: int = 2,
        dpi: float | None = None,
        title: str | None = None,
        plot_txt: bool = True,
        slice_size: int = 1,
        return_fig: bool = True,
    ) -> Figure | None:
        """The confusion matrix as a heat map (rows actual, columns predicted) with the count
        (or, with normalize, the fraction of the actual class, `norm_dec` decimals) in each
        cell while cells are large enough for a 4.5 pt font (up to about 60 classes at the
        default size); zero cells stay blank above 10 classes. top=n shows only the n classes
        most involved in mistakes (off-diagonal items in their row plus their column), in
        class order; normalized rows still divide by the class's full support. Font sizes
        follow the cell size and x labels are rotated: readable with 37 classes.
        fastai v1's `dpi` (of the figure shown and saved; default matplotlib's), `title` (the
        first line of the title) and `plot_txt` (False: no numbers in the cells) work too; its
        `slice_size` (the chunk size of v1's computation: no effect on the matrix) is taken.
        Saved as 'confusion_matrix[_normalized][_top<n>].png'. Returns the Figure (None with
        v1's return_fig=False)."""
        check_bool("normalize", normalize)
        check_bool("plot_txt", plot_txt)
        check_int("slice_size", slice_size, 1)
        check_bool("return_fig", return_fig)
        if dpi is not None:
            number = real_or_none(dpi)
            if number is None or not number > 0:
                raise ValueError(f"dpi should be a number > 0 or None, got {dpi!r}")
            dpi = number
        if title is not None and not isinstance(title, str):
            raise TypeError(f"title should be a str or None, got {type(title).__name__}")
        number = int_or_none(norm_dec)
        if number is None or not 0 <= number <= 6:
            raise ValueError(f"norm_dec should be an int in [0, 6], got {norm_dec!r}")
        norm_dec = number
        cmap_obj = _colormap(cmap)
        cm = self.confusion_matrix()
        keep = np.arange(self.c)
        if top is not None:
            number = int_or_none(top)
            if number is None or number < 1:
                raise ValueError(f"top should be a positive int or None, got {top!r}")
            top = number
            off = cm.copy()
            np.fill_diagonal(off, 0)
            involvement = off.sum(axis=0) + off.sum(axis=1)
            keep = np.sort(np.argsort(-involvement, kind="stable")[: min(int(top), self.c)])
        values = cm.astype(np.float64)
        if normalize:
            support = values.sum(axis=1, keepdims=True)
            values = np.divide(values, support, out=np.zeros_like(values), where=support > 0)
        values = values[np.ix_(keep, keep)]
        counts = cm[np.ix_(keep, keep)]
        n = len(keep)
        side = float(np.clip(2.5 + 0.3 * n, 5, 14))
        figsize = check_figsize(figsize, (side + 1.2, side))
        fig = new_figure(figsize=figsize, dpi=dpi)
        ax = fig.add_subplot()
        vmax = 1.0 if normalize else max(1, int(counts.max()))
        im = ax.imshow(values, interpolation="nearest", cmap=cmap_obj, vmin=0, vmax=vmax)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cell_pts = 0.72 * min(figsize) / n * 72  # about 72% of the figure is the matrix
        label_size = float(np.clip(0.45 * cell_pts, 5, 11))
        shown = values.flat if normalize else counts.flat
        widest = max(len(f"{v:.{norm_dec}f}") if normalize else len(str(v)) for v in shown)
        text_size = min(0.45 * cell_pts, 1.6 * cell_pts / widest, 11.0)
        names = [self.classes[i] for i in keep]
        ax.set_xticks(range(n), names, rotation=90 if n > 10 else 45, fontsize=label_size)
        ax.set_yticks(range(n), names, fontsize=label_size)
        if n <= 10:
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
                label.set_rotation_mode("anchor")
        if plot_txt and text_size >= MIN_CELL_FONT:
            for a, p in zip(*np.nonzero(counts if n > 10 else np.ones_like(counts)), strict=True):
                v = values[a, p]
                text = f"{v:.{norm_dec}f}" if normalize else str(int(counts[a, p]))
                color = "white" if v > 0.5 * vmax else "black"
                ax.text(p, a, text, ha="center", va="center", color=color, fontsize=text_size)
        ax.set_xlabel("Predicted")
        ax.set_ylabel("Actual")
        if title is None:
            title = "Confusion matrix" + (" (normalized by actual class)" if normalize else "")
        if top is not None:
            title += f"\n{n} most confused of {self.c} classes"
        if plot_txt and text_size < MIN_CELL_FONT:
            title += "\n(cells too small for numbers: see top=n)"
        ax.set_title(title, fontsize=12)
        name = "confusion_matrix" + ("_normalized" if normalize else "")
        name += f"_top{n}" if top is not None else ""
        fig = finish(fig, name)
        return fig if return_fig else None

    def show_results(
        self,
        idxs: int | list[int] | range | torch.Tensor,
        figsize: tuple[float, float] | None = None,
        *,
        nrows: int | None = None,
        ncols: int | None = None,
    ) -> Figure:
        """fastai v2's ``interp.show_results(idxs)``: the items at data set indices `idxs`
        (as `interp[idxs]` takes them) as the model sees them, each titled with its actual
        class over the predicted one, green when they agree, red when not (as
        `learn.show_results`), in fastai v2's nrows x ncols grid. Saved as
        'interp_results.png' outside notebooks. Returns the Figure."""
        rows = self._rows(idxs)
        images = self._images(self._raw(self.idxs[rows].tolist()))
        actual, pred = self.targets[rows].tolist(), self.pred_class[rows].tolist()
        titles = [
            f"{self.classes[a]}\n{self.classes[p]}" for a, p in zip(actual, pred, strict=True)
        ]
        fig, axes, fontsize = image_grid(len(titles), figsize, titles, (2.4, 2.8), nrows, ncols)
        for ax, img, title, a, p in zip(axes, images, titles, actual, pred, strict=False):
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title(title, color="green" if a == p else "red", fontsize=fontsize)
        fig.suptitle("actual\nprediction", fontsize=fontsize + 1)
        return finish(fig, "interp_results")

    # ---- helpers -------------------------------------------------------------------------
    def _rows(self, idxs: object) -> list[int]:
        """The rows of the items at data set indices `idxs` (an int, negative from the end, a
        list / tuple / range / slice of them or an int Tensor); IndexError naming an index out
        of range, ValueError one without a row (an unreadable image)."""
        if isinstance(idxs, torch.Tensor):
            if idxs.dtype.is_floating_point or idxs.dim() > 1:
                raise TypeError(f"idxs: expected ints, got a {idxs.dtype} tensor of shape "
                                f"{tuple(idxs.shape)}")  # fmt: skip
            idxs = idxs.tolist()
        n_items = len(self._dataset())
        if isinstance(idxs, slice):
            idxs = range(*idxs.indices(n_items))
        listed = list(idxs) if isinstance(idxs, list | tuple | range) else [idxs]
        if not listed:
            raise ValueError("idxs: an empty list shows nothing")
        rows_of = {int(i): r for r, i in enumerate(self.idxs.tolist())}
        rows = []
        for i in listed:
            number = int_or_none(i)
            if number is None:
                raise TypeError(
                    f"idxs: expected data set indices (ints), got {type(i).__name__} {i!r}"
                )
            if -n_items <= number < 0:  # from the end, as a list's
                number += n_items
            if number not in rows_of:
                if 0 <= number < n_items:
                    raise ValueError(
                        f"idxs: item {number} has no prediction (its image is unreadable)"
                    )
                raise IndexError(f"idxs: expected data set indices in [0, {n_items}), got {number}")
            rows.append(rows_of[number])
        return rows

    def _check_rank(self, r: object) -> int:
        number = int_or_none(r)
        if number is None:
            raise TypeError(f"k: ranks should be ints, got {type(r).__name__} {r!r}")
        if not 0 <= number < len(self):
            raise ValueError(f"k: ranks should be in [0, {len(self)}), got {number}")
        return number

    def _check_k(self, k: int | None) -> int:
        if k is None:
            return len(self)
        number = int_or_none(k)
        if number is None:
            raise TypeError(f"k should be an int or None, got {type(k).__name__} {k!r}")
        if number < 1:
            raise ValueError(f"k should be >= 1, got {number}")
        return min(number, len(self))

    def _dataset(self) -> Any:
        if self.dl is not None:
            ds = getattr(self.dl, "dataset", None)
            if ds is None:
                raise ValueError(
                    f"plotting images needs dl.dataset (ds[i] -> (image, label)), but "
                    f"{type(self.dl).__name__} has none"
                )
            return ds
        ds = getattr(self.data, f"{self.ds_type}_ds", None)
        if ds is None:
            raise ValueError(
                f"plotting images needs learn.data.{self.ds_type}_ds (ds[i] -> (image, label)), "
                f"but {type(self.data).__name__} has none"
            )
        return ds

    def heatmaps(
        self, idxs: list[int], classes: list[int], thresh: int = 16
    ) -> list[np.ndarray | None]:
        """Grad-CAM maps of data set items `idxs` for `classes` (one class index each), as
        fastai v1's plot_top_losses(heatmap=True) draws them: the body's output activations
        A [C, h, w] (the model must be create_cnn's nn.Sequential(body, head)) weighted by the
        spatial mean of d score[class] / dA per channel, summed over channels, ReLU -> float
        array [h, w]; None for an item whose map has fewer than `thresh` cells. The inputs
        go through the validation transform; the model runs in eval mode in float32, its
        modes and gradients untouched."""
        return self._grad_cam(self._raw(idxs), classes, thresh)

    def _grad_cam(
        self, raw: list[torch.Tensor], classes: list[int], thresh: int
    ) -> list[np.ndarray | None]:
        """`heatmaps` of the items `raw` (as the data set stores them)."""
        number = int_or_none(thresh)
        if number is None or number < 0:
            raise ValueError(f"heatmap_thresh should be an int >= 0, got {thresh!r}")
        thresh = number
        model = getattr(self.learn, "model", None)
        if not (isinstance(model, torch.nn.Sequential) and len(model) >= 2):
            raise ValueError(
                "heatmap needs the learner's model to be create_cnn's nn.Sequential(body, "
                f"head), got {type(model).__name__}"
            )
        data = self.data
        if not hasattr(data, "preprocess"):
            raise ValueError("heatmap needs data with a validation transform (data.preprocess)")
        x = data.preprocess(raw).float().to(next(model.parameters()).device)
        body, head = model[0], model[1:]
        modes = [m.training for m in model.modules()]
        model.eval()
        try:
            with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
                acts = body(x).detach().requires_grad_(True)
                scores = head(acts)[torch.arange(len(raw)), torch.as_tensor(classes)]
                (grads,) = torch.autograd.grad(scores.sum(), acts)
        finally:
            for m, mode in zip(model.modules(), modes, strict=True):
                m.training = mode
        if acts.dim() != 4:
            raise ValueError(
                f"heatmap needs the body to output Tensor[B, C, h, w], got {tuple(acts.shape)}"
            )
        cams = torch.relu((acts.detach() * grads.mean((2, 3), keepdim=True)).sum(1)).cpu()
        big_enough = acts.shape[-1] * acts.shape[-2] >= thresh
        return [cam.numpy() if big_enough else None for cam in cams]

    def _raw(self, idxs: list[int]) -> list[torch.Tensor]:
        """The images of data set items `idxs` as the data set stores them."""
        ds = self._dataset()
        return [torch.as_tensor(ds[i][0]) for i in idxs]

    def _images(self, raw: list[torch.Tensor]) -> list[np.ndarray]:
        """Images `raw` (from `_raw`) as float arrays in [0, 1]: [H, W, 3], or [H, W] for one
        channel. Through data.preprocess + data.denorm (the validation transform) when the
        data has them and the images are 3-channel uint8; else as stored."""
        data = self.data
        if (
            hasattr(data, "preprocess")
            and hasattr(data, "denorm")
            and all(_is_rgb_uint8(x) for x in raw)
        ):
            x = data.denorm(data.preprocess(raw).float()).cpu()
            return [img.permute(1, 2, 0).numpy() for img in x]
        return [_as_unit_image(x) for x in raw]


Interpretation = ClassificationInterpretation
"""fastai v2's base class of the interpretations (``Interpretation.from_learner(learn)``,
top_losses, plot_top_losses): the learners here are single-label classifiers, whose
interpretation is ClassificationInterpretation."""


def _is_rgb_uint8(x: torch.Tensor) -> bool:
    """Whether `x` is an image as this library's data sets store it: uint8 [3, H, W]."""
    return x.dtype == torch.uint8 and x.dim() == 3 and x.shape[0] == 3


def _as_unit_image(x: torch.Tensor) -> np.ndarray:
    """A stored image Tensor[C, H, W] (C 1 or 3; uint8, or float in [0, 1]) or [H, W] ->
    float array in [0, 1], [H, W, 3] or [H, W]."""
    if x.dim() == 3 and x.shape[0] == 1:
        x = x[0]
    if not (x.dim() == 2 or (x.dim() == 3 and x.shape[0] == 3)):
        raise ValueError(
            f"images should be Tensor[C, H, W] with C 1 or 3 (or [H, W]), got {tuple(x.shape)}"
        )
    x = x.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float().clamp(0, 1)
    return (x.permute(1, 2, 0) if x.dim() == 3 else x).numpy()


def _colormap(cmap: Any) -> Any:
    import matplotlib

    if isinstance(cmap, str):
        try:
            return matplotlib.colormaps[cmap]
        except KeyError as e:
            raise ValueError(f"cmap should be a matplotlib colormap name, got {cmap!r}") from e
    if isinstance(cmap, matplotlib.colors.Colormap):
        return cmap
    raise TypeError(f"cmap should be a colormap name or Colormap, got {type(cmap).__name__}")


def _data_set(ds_idx: Any, ds_type: Any, dl: Any) -> str | None:
    """The ds_type of from_learner's pass from v2's ds_idx (0, 1) and v1's ds_type ('train',
    'valid'; also a str given as ds_idx, v1's positional form); 'valid' when neither is
    given, None for a `dl`. ValueError for a value outside those, for a ds_idx and a ds_type
    naming different sets, and for a data set given beside a dl."""
    if isinstance(ds_idx, str):  # v1's from_learner(learn, DatasetType.Valid)
        if ds_type is not None:
            raise TypeError(
                f"the data set was given twice: {ds_idx!r} (second argument) and "
                f"ds_type={ds_type!r}"
            )
        ds_idx, ds_type = None, ds_idx
    named = None if ds_idx is None else ds_idx_set(ds_idx)
    if ds_type is not None and ds_type not in ("valid", "train"):
        unlabelled = " (the test set has no labels to compare with)" if ds_type == "test" else ""
        raise ValueError(f"ds_type should be 'valid' or 'train', got {ds_type!r}{unlabelled}")
    if dl is not None:
        if ds_idx is not None or ds_type is not None:
            given = f"ds_idx={ds_idx!r}" if ds_idx is not None else f"ds_type={ds_type!r}"
            raise ValueError(
                f"give dl or a data set of the learner's data, not both; got a dl and {given}"
            )
        return None
    if named is not None and ds_type is not None and named != ds_type:
        raise ValueError(
            f"ds_idx={ds_idx} ({named}) and ds_type={str(ds_type)!r} name different "
            f"data sets: give one of them"
        )
    if named is not None:
        return named
    return "valid" if ds_type is None else str(ds_type)


def _kept_items(data: Any, ds_type: str, n: int) -> torch.Tensor | None:
    """The data set indices of get_preds' `n` rows: every item (None) unless the loaders
    left unreadable files out (`data.bad_items`), then the others in data set order."""
    ds = getattr(data, f"{ds_type}_ds", None)
    items = getattr(ds, "items", None)
    if items is None or len(items) == n:
        return None
    bad = set(getattr(data, "bad_items", []))
    kept = [i for i, item in enumerate(items) if item not in bad]
    if len(kept) != n:
        raise RuntimeError(
            f"get_preds gave {n} rows for the {len(items)} items of the {ds_type} set, and "
            f"{len(items) - len(kept)} unreadable files are known: the rows cannot be matched "
            f"to their images (drop unreadable files with skip_bad=True)"
        )
    return torch.tensor(kept, dtype=torch.int64)
