"""The Hub recipes (configs/recipes/*.toml) need the Hub and a GPU for real; here each is built at tiny
size (same adapters, same modalities, random init) and trained one step on real decoded inputs."""

from pathlib import Path

import pytest
import torch

from tests.media import make_tone_file, make_video
from tests.test_encoders import hf_spec, oc_spec, tokenizer_dir  # noqa: F401  (fixture)
from ume_mma import io
from ume_mma.models import ModelConfig, MultiModalModel
from ume_mma.registry import EncoderSpec, get_spec
from ume_mma.trainconfig import load_config

RECIPES = sorted((Path(__file__).resolve().parents[1] / "configs" / "recipes").glob("*.toml"))


def tiny(spec: EncoderSpec, tokenizer: Path) -> EncoderSpec:
    """The same adapter and modality as ``spec``, at tiny size."""
    if spec.source == "open_clip":
        return oc_spec(spec.options["tower"])
    if spec.source == "transformers":
        return hf_spec(spec.options["kind"], tokenizer)
    if spec.source == "video":
        inner = tiny(get_spec(spec.options["image_encoder"]), tokenizer)
        return spec.replace(
            embed_dim=inner.embed_dim, options={**spec.options, "image_encoder": inner.to_dict(), "num_frames": 2}
        )
    raise AssertionError(f"recipe uses an unexpected source {spec.source}")


@pytest.fixture(scope="module")
def raw_inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recipe")
    video = make_video(tmp / "v.mp4", seconds=1.0, with_audio=True)
    tone = make_tone_file(tmp / "t.wav", 440.0, 1.0, 16000)
    return {
        "video": [io.load_video(video, num_frames=2)] * 2,
        "image": io.load_video(video, num_frames=2).frames,
        "audio": [io.load_audio(tone, 16000), io.load_audio(video, 16000)],
        "text": ["a bowl of ramen with egg", "a space opera about rebels"],
    }


def test_there_are_recipes_for_the_papers_datasets():
    assert {p.stem for p in RECIPES} >= {"kinetics-sounds", "ave", "food101", "mm-imdb"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_builds_and_trains_a_step_at_tiny_size(recipe, raw_inputs, tokenizer_dir):  # noqa: F811
    cfg = load_config(recipe)
    specs = {m: get_spec(name) for m, name in cfg.encoders.items()}
    assert all(s.modality == m and s.pretrained for m, s in specs.items())
    small = {m: tiny(s, tokenizer_dir) for m, s in specs.items()}
    model = MultiModalModel(
        ModelConfig(
            task=cfg.task,
            labels=["a", "b"],
            fusion="mma",
            fill=cfg.fill,
            encoders={m: s.to_dict() for m, s in small.items()},
        )
    )
    inputs = {m: model.encoders[m].preprocess(raw_inputs[m]) for m in model.modalities}
    present = {m: torch.tensor([True, i == 0]) for i, m in enumerate(model.modalities)}
    out = model(inputs, present)
    loss = torch.nn.functional.cross_entropy(out.fused, torch.tensor([0, 1]))
    loss.backward()
    assert out.fused.shape == (2, 2) and torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads.parameters())
