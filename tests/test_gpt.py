"""The character GPT (suite/gpt.py): nanoGPT's sizes and init, causality, its declared prunable set
and prune.include, SynFlow's input at the embedding output, and every method on a tiny GPT."""
import math

import pytest
import torch
from accelerate import Accelerator

from suite import config as C
from suite import experiment as E
from suite import masks as M
from suite.data import DataSpec
from suite.errors import ConfigError
from suite.gpt import GPT
from suite.models import build_model
from suite.trainer import Runner

TEXT = DataSpec("shakespeare_char", (64,), 65, 15685, 1742)
BLOCK = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def gpt(**kw) -> GPT:
    torch.manual_seed(0)
    return build_model("gpt_char", TEXT, config=C.ModelConfig(name="gpt_char", **kw))


def test_default_is_nanogpts_cpu_recipe_and_its_prunable_set_is_the_block_matrices():
    model = gpt()
    assert sum(p.numel() for p in model.parameters()) == 812_416
    weights = M.prunable_weights(model)
    assert list(weights) == [f"transformer.h.{i}.{m}.weight" for i in range(4) for m in BLOCK]
    assert sum(w.numel() for w in weights.values()) == 4 * (128 * 384 + 128 * 128 + 2 * 128 * 512) == 786_432
    dense = M.dense_parameters(model, weights)
    assert dense["transformer.wte.weight"] == dense["lm_head.weight"] == 65 * 128
    assert dense["transformer.wpe.weight"] == 64 * 128
    assert sum(dense.values()) == 812_416 - 786_432  # embeddings, head and 9 LayerNorm gains (no biases)
    assert not any(n.endswith("bias") for n, _ in model.named_parameters())


def test_prune_include_adds_the_head_and_embeddings_in_module_order():
    model = gpt()
    both = M.prunable_weights(model, include=("head", "embeddings"))
    assert list(both)[:2] == ["transformer.wte.weight", "transformer.wpe.weight"]
    assert list(both)[-1] == "lm_head.weight"
    assert sum(w.numel() for w in both.values()) == 786_432 + 65 * 128 + 64 * 128 + 65 * 128
    # keep_last_dense then keeps the head dense again, keep_first_dense the token table
    assert "lm_head.weight" not in M.prunable_weights(model, False, True, ("head",))
    with pytest.raises(ConfigError, match=r"prune\.include: 'ln' is not a group of gpt_char \(valid: embeddings, head\)"):
        M.prunable_weights(model, include=("ln",))
    lenet = build_model("lenet300", DataSpec("mnist", (1, 28, 28), 10, 1, 1))
    with pytest.raises(ConfigError, match=r"prune\.include: MLP has no optional groups"):
        M.prunable_weights(lenet, include=("head",))


def test_bias_setting_puts_biases_in_every_linear_and_layernorm():
    model = gpt(bias=True)
    # 4 blocks x (384 + 128 + 512 + 128 Linear biases + 2 x 128 LayerNorm biases) + ln_f bias; head has none
    assert sum(p.numel() for p in model.parameters()) == 812_416 + 4 * (384 + 128 + 512 + 128 + 256) + 128


def test_logits_are_batch_vocabulary_context_and_causal():
    model = gpt(n_layer=2, n_embd=32, n_head=2).eval()
    x = torch.randint(0, 65, (3, 64), generator=torch.Generator().manual_seed(1))
    out = model(x)
    assert out.shape == (3, 65, 64)
    changed = x.clone()
    changed[:, 40] = (changed[:, 40] + 1) % 65
    later = model(changed)
    assert torch.equal(out[:, :, :40], later[:, :, :40])  # no position sees a later token
    assert not torch.equal(out[:, :, 40:], later[:, :, 40:])
    with pytest.raises(ValueError, match="a sequence of 65 tokens is longer than the context 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_gpt2_init_scales_the_residual_projections():
    model = gpt()
    params = {n: p.detach() for n, p in model.named_parameters()}
    assert abs(float(params["transformer.h.0.mlp.c_fc.weight"].std()) - 0.02) < 4e-4
    assert abs(float(params["transformer.wte.weight"].std()) - 0.02) < 1e-3
    for name in ("transformer.h.0.attn.c_proj.weight", "transformer.h.3.mlp.c_proj.weight"):
        assert abs(float(params[name].std()) - 0.02 / math.sqrt(8)) < 2e-4, name
    assert torch.equal(params["transformer.ln_f.weight"], torch.ones(128))


def test_synflow_takes_its_ones_at_the_embedding_output():
    from baselines.synflow import synflow_scores

    model = gpt(n_layer=2, n_embd=32, n_head=2)
    scores = synflow_scores(model, (64,), weights=M.prunable_weights(model))
    for i in range(2):
        qkv = scores[f"transformer.h.{i}.attn.c_attn.weight"]
        # identical positions: attention's output does not depend on queries and keys
        assert float(qkv[:64].abs().max()) <= 1e-9 * float(qkv[64:].max())
        assert bool((qkv[64:] > 0).all())  # the value rows and every other matrix carry flow
        for m in BLOCK[1:]:
            assert bool((scores[f"transformer.h.{i}.{m}.weight"] > 0).all())
    # the model is left as it was: LayerNorms normalise again
    assert not any(getattr(m, "linear", False) for m in model.modules())


# --- every method on a tiny GPT on synthetic text ---------------------------------------------------

TINY_GPT = ["data.name=synthetic_text", "data.synthetic_train=3000", "data.context=16", "model.name=gpt_char",
            "model.n_layer=2", "model.n_embd=32", "model.n_head=2", "train.epochs=2", "train.batch_size=8",
            "train.optimizer=adam", "train.lr=0.001", "wandb.mode=disabled", "lth.rate=0.6",
            "synflow.iterations=10", "grasp.samples_per_class=2", "rigl.update_every=5"]


def train(tmp_path, method: str, *extra: str) -> dict:
    cfg = E.load_config(None, [*TINY_GPT, *extra], method)
    return Runner(cfg, tmp_path / method / str(abs(hash(extra))), Accelerator(cpu=True)).run(progress=False)


@pytest.mark.parametrize("method", ["progressive", "snip", "grasp", "synflow", "lth", "random", "rigl", "set",
                                    "gmp", "oneshot"])
def test_every_method_prunes_the_block_matrices_to_the_weight(tmp_path, method):
    r = train(tmp_path, method, "prune.target_sparsity=0.8")
    assert r["prunable_total"] == 2 * (32 * 96 + 32 * 32 + 2 * 32 * 128) == 24_576
    assert r["prunable_total"] - r["prunable_remaining"] == round(0.8 * 24_576) == 19_661
    assert set(r["prunable_set"]) == {f"transformer.h.{i}.{m}.weight" for i in range(2) for m in BLOCK}
    assert r["dense_set"]["lm_head.weight"] == 20 * 32  # synthetic_text's 20 characters
    assert math.isfinite(r["final_test_loss"])
    assert r["metric"] == {"name": "test_loss", "label": "held-out loss (nats/char)", "higher_is_better": False}


@pytest.mark.parametrize("method", ["progressive", "snip", "rigl"])
def test_two_four_structure_on_the_block_matrices(tmp_path, method):
    r = train(tmp_path, method, "prune.structure=nm", "prune.target_sparsity=0.5")
    assert r["prunable_remaining"] == 24_576 // 2
    assert all(s == 0.5 for s in r["layer_sparsity"].values())


def test_ablations_train_the_sources_mask(tmp_path):
    source = train(tmp_path, "snip", "prune.target_sparsity=0.8")
    folder = tmp_path / "snip" / str(abs(hash(("prune.target_sparsity=0.8",))))
    assert source["prunable_remaining"] == 24_576 - 19_661
    for kind in ("shuffle", "reinit", "invert", "ticket", "rewire"):
        r = train(tmp_path, kind, f"ablate.source={folder}")
        assert r["prunable_total"] - r["prunable_remaining"] == 19_661, kind


def test_dense_keeps_every_weight(tmp_path):
    r = train(tmp_path, "dense")
    assert r["prunable_remaining"] == r["prunable_total"] == 24_576


def test_include_makes_the_head_prunable(tmp_path):
    r = train(tmp_path, "snip", "prune.target_sparsity=0.8", "prune.include=[head]")
    assert r["prunable_total"] == 24_576 + 20 * 32
    assert "lm_head.weight" in r["prunable_set"] and "lm_head.weight" not in r["dense_set"]
    assert r["prunable_total"] - r["prunable_remaining"] == round(0.8 * (24_576 + 640))
    assert E.experiment_hash(E.load_config(None, [*TINY_GPT, "prune.include=[head]"], "snip")) != \
        E.experiment_hash(E.load_config(None, TINY_GPT, "snip"))


@pytest.mark.slow  # a real GPT run from the CLI
def test_the_cli_names_the_datasets_primary_metric(tmp_path):
    from helpers import run_cli

    proc = run_cli(["--method", "snip", "--out", str(tmp_path), *TINY_GPT, "train.epochs=1",
                    "prune.target_sparsity=0.8"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = [line for line in proc.stderr.splitlines() if line.startswith("done: ")]
    assert len(done) == 1 and done[0].startswith("done: snip gpt_char/synthetic_text seed 42: test loss ")
    assert " at sparsity 0.8000 (target 0.8000) " in done[0]


def test_the_gpt_flops_count_attention_beside_the_block_matrices(tmp_path):
    cfg = E.load_config(None, TINY_GPT, "dense")
    flops = Runner(cfg, tmp_path, Accelerator(cpu=True)).flops
    T_, C_, V, L = 16, 32, 20, 2  # context, width, vocabulary, blocks
    block = 2 * T_ * C_ * 3 * C_ + 2 * T_ * C_ * C_ + 2 * (2 * T_ * C_ * 4 * C_)  # qkv, proj, MLP up and down
    attention = 2 * (2 * T_ * T_ * C_)  # QK^T and AV over all heads, which pruning the matrices leaves whole
    assert flops.total == L * (block + attention) + 2 * T_ * C_ * V  # + the head; embeddings are lookups
    assert flops.other == L * attention + 2 * T_ * C_ * V


def test_the_language_model_recipe_under_a_step_budget(tmp_path):
    # AdamW, warm-up then cosine, clipping, 30 optimizer steps: an epoch and a part of the next
    recipe = ["train.steps=30", "train.optimizer=adamw", "train.weight_decay=0.1", "train.betas=[0.9, 0.99]",
              "train.lr_schedule=warmup_cosine", "train.warmup_steps=5", "train.min_lr=1e-4", "train.grad_clip=1.0"]
    r = train(tmp_path, "lth", *recipe, "lth.rewind_step=3", "prune.target_sparsity=0.6")
    assert (r["steps"], r["rewind_step"], r["rounds"]) == (30, 3, 2)
    per_epoch = round(r["steps"] / r["epochs"])
    assert 15 < per_epoch < 30
    # round 0: an epoch and 30 - e steps; round 1 trains from the rewinding step on: e - 3, then 30 - e
    tail = (30 - per_epoch) / per_epoch
    assert r["total_epochs_trained"] == 1 + tail + (per_epoch - 3) / per_epoch + tail
    assert r["prunable_total"] - r["prunable_remaining"] == round(0.6 * 24_576)
    r = train(tmp_path, "progressive", *recipe, "prune.update_every_steps=5", "prune.target_sparsity=0.8")
    assert (r["steps"], r["epochs"]) == (30, 30 / per_epoch) and r["achieved_sparsity"] == round(0.8 * 24_576) / 24_576
