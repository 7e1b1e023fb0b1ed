"""The model contract, for every encoder: fit, export, reload, same outputs, config round trip."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from prismrec.config import ModelSection
from prismrec.models import ENCODERS, build_model
from prismrec.models.extractors import CapsuleExtractor, SelfAttentiveExtractor, squash
from prismrec.models.losses import log_q_from_counts, sampled_softmax_loss
from prismrec.models.towers import export_encoder, load_encoder

pytestmark = pytest.mark.unit
NUM_ITEMS, LENGTH = 40, 6


def tiny_model(encoder: str):
    counts = np.arange(NUM_ITEMS, 0, -1).astype(float)
    category_idx = 1 + np.arange(NUM_ITEMS) % 5
    section = ModelSection(encoder=encoder, num_interests=3, embedding_dim=8, hidden_dim=8, seed_mlp_dims=4)
    return build_model(section, NUM_ITEMS, LENGTH, category_idx, counts), log_q_from_counts(counts)


def batches(seed=0):
    rng = np.random.default_rng(seed)
    hist = rng.integers(1, NUM_ITEMS, size=(16, LENGTH)).astype(np.int32)
    hist[:4, :3] = 0  # some left padding
    return {"hist_items": tf.constant(hist), "target_item": tf.constant(rng.integers(1, NUM_ITEMS, 16), tf.int32)}


@pytest.mark.parametrize("encoder", ENCODERS)
def test_model_contract(encoder, tmp_path):
    tf.keras.utils.set_random_seed(1)
    model, log_q = tiny_model(encoder)
    optimizer = tf.keras.optimizers.Adam(0.01)
    batch = batches()
    losses = []
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss = model.training_loss(batch, tf.constant(log_q), 8, 0.5)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    export_encoder(model, str(tmp_path / "encoder"))
    reloaded = load_encoder(str(tmp_path / "encoder"))(batch["hist_items"].numpy())
    direct = model.encode(batch["hist_items"])
    for name in ("interest_vectors", "interest_weights"):
        np.testing.assert_allclose(reloaded[name], direct[name].numpy(), atol=1e-6)
    config = json.loads(json.dumps(model.get_config()))
    clone = type(model).from_config(config)
    assert clone.get_config() == model.get_config()
    expected_k = 1 if encoder in ("mean_pool", "seed_mlp") else 3
    assert direct["interest_vectors"].shape[:2] == (16, expected_k)
    np.testing.assert_allclose(direct["interest_weights"].numpy().sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("extractor", [SelfAttentiveExtractor(2, 4), CapsuleExtractor(2, 3)])
def test_padding_gets_no_weight_and_empty_history_is_finite(extractor):
    history = tf.random.normal([2, 4, 3], seed=3)
    mask = tf.constant([[False, False, True, True], [False, False, False, False]])
    vectors, weights = extractor(history, mask)
    assert np.all(weights.numpy()[0, :, :2] == 0)
    assert np.isfinite(vectors.numpy()).all() and np.allclose(vectors.numpy()[1], 0)


def test_squash_keeps_direction_and_bounds_norm():
    vector = tf.constant([[3.0, 4.0]])  # norm 5 → 25 / 26
    out = squash(vector).numpy()
    assert np.linalg.norm(out) == pytest.approx(25 / 26, rel=1e-5)
    np.testing.assert_allclose(out / np.linalg.norm(out), [[0.6, 0.8]], rtol=1e-5)


def test_label_aware_selection_picks_the_closest_interest():
    model, _ = tiny_model("self_attentive")
    batch = batches()
    outputs = model(batch)
    targets = model.item_embedding(batch["target_item"]).numpy()
    best = np.einsum("bkd,bd->bk", outputs["interest_vectors"].numpy(), targets).argmax(axis=1)
    expected = outputs["interest_vectors"].numpy()[np.arange(16), best]
    np.testing.assert_allclose(outputs["user_vector"].numpy(), expected, atol=1e-6)


def test_sampled_softmax_by_hand():
    # u = [[1, 0], [0, 1]], items 1 = [1, 0], 2 = [0, 1], 3 = [1, 1]; targets [1, 2]; one sample: 3.
    # log q = 0 for all, temperature 1. Row 0 logits over [1, 2, 3] = [1, 0, 1]: loss = log(e + 1 + e) - 1.
    # Row 1 logits = [0, 1, 1]: loss = log(1 + e + e) - 1. Mean = log(2e + 1) - 1 = 0.8620.
    table = tf.constant([[0, 0], [1, 0], [0, 1], [1, 1]], tf.float32)
    loss = sampled_softmax_loss(tf.constant([[1.0, 0], [0, 1.0]]), tf.constant([1, 2]), table,
                                tf.constant([3]), tf.zeros([4]), 1.0)
    assert float(loss) == pytest.approx(np.log(2 * np.e + 1) - 1, rel=1e-5)


def test_accidental_hits_are_masked():
    # Sampling the row's own target must not count it as a negative: the loss equals the no-sample case.
    table = tf.constant([[0, 0], [1, 0], [0, 1]], tf.float32)
    users, targets = tf.constant([[1.0, 0], [0, 1.0]]), tf.constant([1, 2])
    with_hit = sampled_softmax_loss(users, targets, table, tf.constant([1]), tf.zeros([3]), 1.0)
    # Row 0: the sampled 1 is masked → logits [1, 0]; row 1: the sampled 1 is a true negative → [0, 1, 0].
    expected = (np.log(np.e + 1) - 1 + np.log(1 + np.e + 1) - 1) / 2
    assert float(with_hit) == pytest.approx(expected, rel=1e-5)


def test_importing_models_leaves_spark_and_horovod_out():
    code = "import sys, prismrec.models, prismrec.models.towers, prismrec.models.seed_mlp; " \
           "print(any(m.split('.')[0] in ('pyspark', 'horovod') for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
