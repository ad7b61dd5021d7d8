"""`faceidx train --sampler cluster`, `--loss contrastive|siamese`, `--architecture inception-resnet-v1`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceidx.cli.main import cli


@pytest.fixture
def runner():
    return CliRunner()


def _train(runner, shared_data, out, *extra):
    args = ["-q", "train", str(shared_data / "orl"), "--out", str(out), "--init", "scratch",
            "--detector", "none", "--embedding-dim", "32", "--epochs", "1", "--batches-per-epoch", "4",
            "--json", *extra]
    return runner.invoke(cli, args)


def test_cluster_sampler_with_contrastive_loss(runner, shared_data, tmp_path):
    result = _train(runner, shared_data, tmp_path / "M", "--sampler", "cluster", "--loss", "contrastive",
                    "--cluster-share", "1", "--clusters", "4", "--refresh-every", "2", "--p", "4")
    assert result.exit_code == 0, result.output
    h = json.loads(result.output)["history"]
    assert [x["epoch"] for x in h] == [0, 1] and h[1]["refresh_seconds"] > 0
    card = json.loads((tmp_path / "M" / "faceidx-model.json").read_text())
    assert card["training"]["loss"] == "contrastive" and card["training"]["margin"] == 1.0
    assert card["training"]["sampler"] == "cluster" and card["training"]["clusters"] == 4
    # resuming with another loss is refused, naming the checkpoint
    result = runner.invoke(cli, ["train", str(shared_data / "orl"), "--out", str(tmp_path / "M"),
                                 "--init", "scratch", "--detector", "none", "--embedding-dim", "32",
                                 "--epochs", "2", "--resume", "--loss", "triplet"])
    assert result.exit_code == 1 and "contrastive loss" in result.output and "checkpoint.pt" in result.output


def test_siamese_head_is_saved_and_scores_pairs(runner, shared_data, orl_chips, tmp_path):
    result = _train(runner, shared_data, tmp_path / "M", "--loss", "siamese", "--siamese-distance", "chi2",
                    "--val", "0")
    assert result.exit_code == 0, result.output
    from faceidx.embedder.registry import load_model
    from faceidx.train.export import load_head

    head = load_head(tmp_path / "M")
    assert head.distance == "chi2" and head.dim == 32
    model = load_model(tmp_path / "M")
    e = torch.from_numpy(model.embed_chips(orl_chips.take(range(4))))
    p = head.score(e[[0, 1]], e[[2, 3]]).detach().numpy()
    assert p.shape == (2,) and np.all((p > 0) & (p < 1))


def _lfw_tree(shared_data, root, names=("Abdullah_Gul", "Adrien_Brody", "Ari_Fleischer"), per=3):
    """A few LFW photos per identity, copied (the shared data is read-only)."""
    import shutil

    for name in names:
        (root / name).mkdir(parents=True)
        for f in sorted((shared_data / "lfw-subset" / name).iterdir())[:per]:
            shutil.copy(f, root / name / f.name)
    return root


def test_inception_resnet_v1_trains_on_facenet_chips_and_embeds(runner, shared_data, tmp_path):
    data = _lfw_tree(shared_data, tmp_path / "lfw")
    result = runner.invoke(cli, ["-q", "train", str(data), "--out", str(tmp_path / "M"), "--init", "scratch",
                                 "--architecture", "inception-resnet-v1", "--embedding-dim", "32",
                                 "--epochs", "1", "--batches-per-epoch", "1", "--p", "2", "--k", "2",
                                 "--val", "0", "--json"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "M" / "faceidx-model.json").read_text())
    assert (card["template"], card["input_size"], card["network_input_size"]) == ("facenet-160", 160, 160)
    chips = list((tmp_path / "M" / "training" / "chips").glob("chips-*.npy"))
    assert len(chips) == 1 and np.load(chips[0], mmap_mode="r").shape[1:] == (160, 160, 3)
    emb = tmp_path / "E"
    result = runner.invoke(cli, ["-q", "embed", str(data / "Adrien_Brody"), "--model", str(tmp_path / "M"),
                                 "--out", str(emb), "--workers", "0"])
    assert result.exit_code == 0, result.output
    from faceidx.io import open_collection

    coll = open_collection(emb)
    assert coll.dim == 32 and coll.num_rows == 3 and coll.meta.model == "trained-inception-resnet-v1"
    # already-cropped faces cannot give FaceNet's crop: a clear error, with the way out
    result = runner.invoke(cli, ["train", str(data), "--out", str(tmp_path / "N"), "--init", "scratch",
                                 "--architecture", "inception-resnet-v1", "--detector", "none"])
    assert result.exit_code == 1 and "--template dlib-150" in result.output


def test_new_options_in_help(runner):
    out = runner.invoke(cli, ["train", "--help"]).output
    for option in ("--sampler", "--loss", "--siamese-distance", "--cluster-share", "--template",
                   "inception-resnet-v1"):
        assert option in out
