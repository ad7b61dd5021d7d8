"""Calibration plots (PNG, headless): score histograms, ROC/DET, FPIR/TPIR vs threshold.

matplotlib is imported inside `write_plots` with the Agg backend, so no display is
needed and importing faceidx.query stays light.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from faceidx.io.atomic import atomic_path
from faceidx.query import metrics as M


def write_plots(out_dir: str | os.PathLike, calibration: dict, raw: dict) -> list[Path]:
    """Write scores.png, roc.png (ROC + DET; only when 1:1 pairs were measured) and
    openset.png into out_dir; return their paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    verif, oset = calibration["verification"], calibration["openset"]
    top = raw["nonmated_top"]
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    if verif is not None:  # 1:1 pairs exist (None: one photo per holdout person)
        g, i = raw["genuine"], raw["impostor"]
        bins = np.linspace(min(g.min(), i.min(), top.min()), 1.0, 80)
        ax.hist(i, bins=bins, density=True, alpha=0.5, label=f"impostor pairs ({len(i):,})")
        ax.hist(g, bins=bins, density=True, alpha=0.5, label=f"genuine pairs ({len(g):,})")
        ax.axvline(verif["threshold"], color="k", ls="--", lw=1,
                   label=f"1:1 thr @FAR {verif['target_far']:g}: {verif['threshold']:.3f}")
    else:
        bins = np.linspace(top.min(), 1.0, 80)
    ax.hist(top, bins=bins, density=True, histtype="step", lw=1.5,
            label=f"non-mated top-1 over N={oset['gallery_identities']:,} ({len(top):,})")
    ax.axvline(oset["threshold"], color="r", ls="-", lw=1,
               label=f"1:N thr @FPIR {oset['target_fpir']:g}: {oset['threshold']:.3f}")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title("Score distributions")
    ax.legend(fontsize=7)
    paths.append(_save(fig, out / "scores.png"))
    if verif is not None:
        paths.append(_roc(plt, out, verif, raw["genuine"], raw["impostor"]))
    paths.append(_openset(plt, out, oset, raw, top, verif))
    return paths


def _roc(plt, out: Path, verif: dict, g: np.ndarray, i: np.ndarray) -> Path:
    far, tar, _ = M.roc_curve(g, i)
    floor = 0.5 / len(i)
    keep = _thin(far, tar, floor)
    far, tar = far[keep], tar[keep]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    a1.semilogx(np.maximum(far, floor), tar)
    a1.plot([verif["far"] or floor], [verif["tar"]], "ro",
            label=f"TAR {verif['tar']:.3f} @ FAR {verif['far']:.1e}")
    a1.plot([verif["eer"]], [1 - verif["eer"]], "ks", label=f"EER {verif['eer']:.3f}")
    a1.set_xlabel("FAR (impostor pairs accepted)")
    a1.set_ylabel("TAR")
    a1.set_title("ROC (1:1)")
    a1.legend(fontsize=8)
    a1.grid(True, which="both", alpha=0.3)
    a2.loglog(np.maximum(far, floor), np.maximum(1 - tar, 0.5 / len(g)))
    a2.plot([verif["far"] or floor], [max(1 - verif["tar"], 0.5 / len(g))], "ro")
    a2.set_xlabel("FAR")
    a2.set_ylabel("FRR = 1 - TAR")
    a2.set_title("DET (1:1)")
    a2.grid(True, which="both", alpha=0.3)
    return _save(fig, out / "roc.png")


def _openset(plt, out: Path, oset: dict, raw: dict, top: np.ndarray, verif: dict | None) -> Path:
    t = np.linspace(min(top.min(), raw["mate_score"][np.isfinite(raw["mate_score"])].min()
                        if np.isfinite(raw["mate_score"]).any() else top.min()), 1.0, 400)
    fpir = M.fpir_curve(top, t)
    # FPIR on a log axis: the region users set thresholds in (1% and below) is visible;
    # a rate of 0 is drawn at half of one search in the sample (the measurable floor).
    fpir_floor = 0.5 / len(top)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    handles = ax.semilogy(t, np.maximum(fpir, fpir_floor), label="FPIR (strangers accepted, log)")
    handles.append(ax.axhline(oset["target_fpir"], color="r", ls=":", lw=1,
                              label=f"target FPIR {oset['target_fpir']:g}"))
    ext = oset.get("extrapolation")
    if ext:
        from faceidx.query.tail import ImpostorTail

        tail = ImpostorTail(**ext["tail"])
        tt = t[t >= tail.u]
        for f, color in ((10, "tab:orange"), (100, "tab:brown")):
            n = tail.n_identities * f
            handles += ax.semilogy(tt, np.maximum([tail.fpir(x, n) for x in tt], fpir_floor),
                                   ls=":", color=color, label=f"FPIR modelled at {f}x N")
    ax.set_ylim(fpir_floor * 0.8, 1.05)
    if len(raw["mate_rank"]):
        tpir = 1 - M.fnir_curve(raw["mate_rank"], raw["mate_score"], t)
        right = ax.twinx()
        handles += right.plot(t, tpir, color="tab:green", label="TPIR (enrolled found at rank 1, right)")
        right.set_ylim(0, 1.02)
        right.set_ylabel("TPIR (linear)")
    handles.append(ax.axvline(
        oset["threshold"], color="r", lw=1,
        label=f"threshold {oset['threshold']:.3f}: FPIR {oset['fpir']:.3f}, TPIR "
              + ("not measured" if oset["tpir"] is None else f"{oset['tpir']:.3f}")))
    if verif is not None:
        handles.append(ax.axvline(
            verif["threshold"], color="k", ls="--", lw=1,
            label=f"1:1 threshold: FPIR {oset['fpir_at_verification_threshold']:.3f}"))
    ax.set_xlabel("threshold (cosine)")
    ax.set_ylabel(f"FPIR (log; floor {fpir_floor:.1e} = none of {len(top):,} searches)")
    ax.set_title(f"Open-set 1:N, gallery N = {oset['gallery_identities']:,} identities")
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, out / "openset.png")


def _thin(far: np.ndarray, tar: np.ndarray, floor: float, points: int = 1500) -> np.ndarray:
    """Indices of at most ~3*points ROC points, dense in log-FAR and in TAR (for drawing)."""
    grid = np.logspace(np.log10(floor), 0, points)
    idx = np.concatenate([np.searchsorted(far, grid), np.searchsorted(tar, np.linspace(0, 1, points)),
                          np.linspace(0, len(far) - 1, points).astype(np.int64)])
    return np.unique(np.clip(idx, 0, len(far) - 1))


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path
