"""One Horovod rank's training work, the same under every launcher.

Horovod's per-rank checklist: rank 0's variables and optimizer state are broadcast
before the first step, gradients are averaged by ``DistributedGradientTape``, the
learning rate is scaled by the world size, every loss and metric is averaged across
ranks before anyone reads it, and only rank 0 writes (checkpoints, the artifact).
Every rank runs exactly ``steps_per_epoch`` steps, and every stop decision (NaN,
early stopping) is taken on allreduced values, so all ranks stop at the same step.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from prismrec.ranking.recommend import Ranking, rank_items
from prismrec.ranking.retrieval import ExactSearch
from prismrec.training.pruning import epoch_pruner

logger = logging.getLogger(__name__)
VALID_K = 50  # model selection and early stopping
TUNE_K = 20  # also reported per epoch: the figure `prismrec tune` scores trials by


class NonFiniteLoss(FloatingPointError):
    """The rank-averaged loss became NaN or infinite; training stops on every rank."""


def weights_digest(variables) -> str:
    """SHA-256 over every variable's bytes: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for variable in sorted(variables, key=lambda v: v.name):
        digest.update(variable.name.encode())
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


def load_validation(path: str | None, limit: int, rank: int, size: int) -> dict | None:
    """This rank's share of the validation users (hist_items, seen_items, target_items), or None."""
    if not path or not Path(path).exists():
        return None
    import pandas as pd

    users = pd.read_parquet(path).sort_values("user_id").head(limit)
    users = users[users["target_items"].map(len) > 0].iloc[rank::size]
    return {"hist_items": np.stack(users["hist_items"].to_numpy()).astype(np.int32) if len(users) else None,
            "seen_items": [np.asarray(s, dtype=np.int64) for s in users["seen_items"]],
            "target_items": [np.asarray(t, dtype=np.int64) for t in users["target_items"]]}


def validation_sums(model, users: dict | None, ranking=None, batch: int = 256) -> tuple[float, ...]:
    """(Σ NDCG@50, Σ Recall@50, users, Σ NDCG@20, Σ Recall@20) over this rank's validation users,
    with full ranking."""
    from prismrec.ranking.metrics import batch_metrics

    if users is None or users["hist_items"] is None:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    table = ExactSearch(model.item_table().numpy())
    ndcg = recall = ndcg_tune = recall_tune = 0.0
    for start in range(0, len(users["seen_items"]), batch):
        hist = users["hist_items"][start:start + batch]
        encoded = model.encode(hist)
        items, scores, _ = rank_items(encoded["interest_vectors"].numpy(), encoded["interest_weights"].numpy(),
                                      table, users["seen_items"][start:start + batch], VALID_K, ranking or Ranking())
        metrics = batch_metrics(np.where(np.isfinite(scores), items, -1),
                                users["target_items"][start:start + batch], [TUNE_K, VALID_K])
        ndcg += float(metrics[f"ndcg@{VALID_K}"].sum())
        recall += float(metrics[f"recall@{VALID_K}"].sum())
        ndcg_tune += float(metrics[f"ndcg@{TUNE_K}"].sum())
        recall_tune += float(metrics[f"recall@{TUNE_K}"].sum())
    return ndcg, recall, float(len(users["seen_items"])), ndcg_tune, recall_tune


def make_optimizer(train, size: int, total_steps: int):
    import tensorflow as tf

    rate = train.learning_rate * size
    if train.lr_schedule == "cosine":
        rate = tf.keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(total_steps, 1), alpha=0.05)
    # Keras 2.11+ optimizers apply ``weight_decay`` decoupled from the gradient (AdamW for adam).
    return {"adam": tf.keras.optimizers.Adam, "adagrad": tf.keras.optimizers.Adagrad,
            "sgd": tf.keras.optimizers.SGD}[train.optimizer](learning_rate=rate,
                                                             weight_decay=train.weight_decay or None)


def train_rank(spec: dict) -> dict:
    """Train on this rank's shard; rank 0 checkpoints every epoch and exports the best model.

    ``spec`` comes from :func:`prismrec.training.launch.build_spec`: the resolved config,
    data paths, item statistics, ``steps_per_epoch``, ``model_dir``, ``checkpoint_dir``,
    ``resume``, and ``pruning`` when a tuning trial may be stopped early
    (:func:`prismrec.training.pruning.epoch_pruner`). Returns this rank's summary (steps, losses,
    validation metrics, weights digest, and ``pruned_after``: the epoch a pruner stopped at, or None).
    """
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from prismrec.config import from_dict
    from prismrec.preprocess.petastorm_io import sharded_batches
    from prismrec.models import build_model
    from prismrec.training import artifact

    hvd.init()
    cfg = from_dict(spec["config"])
    train = cfg.train
    try:
        tf.config.threading.set_intra_op_parallelism_threads(train.intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(train.inter_op_threads)
    except RuntimeError:
        # In a single-process run the driver may already have started TensorFlow.
        logger.info("TensorFlow already initialised; keeping its thread settings")
    tf.keras.utils.set_random_seed(train.seed)
    rank, size = hvd.rank(), hvd.size()
    steps_per_epoch = int(spec["steps_per_epoch"])
    total_steps = steps_per_epoch * train.epochs

    model = build_model(cfg.model, spec["num_items"], cfg.preprocess.max_hist_len,
                        np.asarray(spec["item_category_idx"]), np.asarray(spec["item_counts"]))
    optimizer = make_optimizer(train, size, total_steps)
    log_q = tf.constant(spec["log_q"], dtype=tf.float32)
    length = cfg.preprocess.max_hist_len
    model({"hist_items": tf.zeros([1, length], tf.int32), "target_item": tf.ones([1], tf.int32)})
    optimizer.build(model.trainable_variables)
    state = {"epoch": tf.Variable(0, dtype=tf.int64), "best": tf.Variable(-1.0, dtype=tf.float64),
             "stale": tf.Variable(0, dtype=tf.int64)}
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, **state)
    manager = tf.train.CheckpointManager(checkpoint, str(Path(spec["checkpoint_dir"]) / "last"), max_to_keep=1)
    best_prefix = str(Path(spec["checkpoint_dir"]) / "best" / "ckpt")
    if train.warm_start and rank == 0:  # the broadcast below hands rank 0's weights to every rank
        from prismrec.training.warm import load_initial_weights

        load_initial_weights(model, train.warm_start, spec["items_path"])
    if spec.get("resume") and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        if rank == 0:
            logger.info("resuming from %s after epoch %d", manager.latest_checkpoint, int(state["epoch"].numpy()))
    # Rank 0's state wins everywhere, restored or fresh.
    hvd.broadcast_variables(model.variables, root_rank=0)
    hvd.broadcast_variables(optimizer.variables, root_rank=0)
    validation = load_validation(spec.get("valid_path"), train.validation_users, rank, size)
    # Model selection ranks as scoring does, less the category-diversity re-pick.
    validation_ranking = replace(Ranking.of(cfg.score), diversity=0.0)
    # Rank 0 decides, every rank follows: the decision is summed over ranks like the metrics.
    prune = epoch_pruner(spec["pruning"]) if spec.get("pruning") and rank == 0 else None
    pruned_after = None

    @tf.function
    def train_step(batch, inject_nan, seed):
        with tf.GradientTape() as tape:
            loss = model.training_loss(batch, log_q, train.num_negatives, train.temperature, seed)
        # Dense gradients: the item table is small enough that allreduce beats allgather of slices.
        tape = hvd.DistributedGradientTape(tape, sparse_as_dense=True)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        reported = tf.where(inject_nan, tf.constant(float("nan")), loss)
        return hvd.allreduce(reported, op=hvd.Average)

    history, metrics, steps_done, started = [], [], 0, time.time()
    for epoch in range(int(state["epoch"].numpy()), train.epochs):
        losses, epoch_started = [], time.time()
        # A fresh reader per epoch, seeded by the epoch, and stateless negative sampling seeded by
        # the step: an epoch sees the same data and negatives whether or not the run was resumed.
        with sharded_batches(spec["rank_files"][rank], train.batch_size, train.seed + 1000 * epoch + rank,
                             cfg.preprocess.max_hist_len) as batches:
            batch_iter = iter(batches)
            for step in range(steps_per_epoch):
                global_step = epoch * steps_per_epoch + step
                inject = tf.constant(global_step == train.inject_nan_step and rank == train.inject_nan_rank)
                seed = tf.constant([train.seed, global_step * size + rank], tf.int32)
                loss = float(train_step(next(batch_iter), inject, seed))
                steps_done += 1
                if not math.isfinite(loss):
                    raise NonFiniteLoss(f"rank-averaged loss is {loss} at step {global_step} (rank {rank}); "
                                        f"stopping every rank, publishing nothing. Lower train.learning_rate "
                                        f"or raise train.temperature")
                losses.append(loss)
                if rank == 0 and steps_per_epoch >= 10 and (step + 1) % max(steps_per_epoch // 4, 1) == 0:
                    elapsed = time.time() - started
                    logger.info("epoch %d step %d/%d loss %.4f, %.0f examples/s, eta %.0fs", epoch + 1, step + 1,
                                steps_per_epoch, np.mean(losses), steps_done * train.batch_size * size / elapsed,
                                elapsed / steps_done * ((train.epochs - epoch) * steps_per_epoch - step - 1))
            # Reader start-up and steps, not validation; the slowest rank sets the pace.
            train_seconds = float(hvd.allreduce(tf.constant(time.time() - epoch_started, tf.float64), op=hvd.Max))
            sums = hvd.allreduce(tf.constant(validation_sums(model, validation, validation_ranking), tf.float64),
                                 op=hvd.Sum).numpy()
            ndcg = float(sums[0] / sums[2]) if sums[2] else float("nan")
            history.append(float(np.mean(losses)))
            metrics.append({"epoch": epoch + 1, "loss": history[-1], f"valid_ndcg@{VALID_K}": ndcg,
                            "examples_per_second": steps_per_epoch * train.batch_size * size / train_seconds,
                            **{f"valid_{name}@{k}": float(sums[at] / sums[2]) if sums[2] else float("nan")
                               for name, k, at in (("recall", VALID_K, 1), ("ndcg", TUNE_K, 3),
                                                   ("recall", TUNE_K, 4))}})
            improved = sums[2] > 0 and ndcg > float(state["best"].numpy()) + 1e-9
            state["epoch"].assign(epoch + 1)
            state["best"].assign(ndcg if improved else state["best"])
            state["stale"].assign(0 if improved else state["stale"] + 1)
            if rank == 0:
                if improved:
                    checkpoint.write(best_prefix)
                manager.save()
                elapsed = time.time() - started
                logger.info("epoch %d/%d loss %.4f valid ndcg@%d %.4f recall@%d %.4f, %.0f examples/s, eta %.0fs",
                            epoch + 1, train.epochs, history[-1], VALID_K, ndcg, VALID_K,
                            metrics[-1][f"valid_recall@{VALID_K}"], steps_done * train.batch_size * size / elapsed,
                            elapsed / max(steps_done, 1) * (train.epochs - epoch - 1) * steps_per_epoch)
            if spec.get("pruning"):
                stop = 1.0 if prune is not None and prune(epoch + 1, metrics[-1][f"valid_ndcg@{TUNE_K}"]) else 0.0
                if float(hvd.allreduce(tf.constant(stop, tf.float64), op=hvd.Sum)) > 0:
                    pruned_after = epoch + 1
                    if rank == 0:
                        logger.info("pruned after epoch %d: validation NDCG@%d %.4f is below the pruner's bar",
                                    epoch + 1, TUNE_K, metrics[-1][f"valid_ndcg@{TUNE_K}"])
                    break
            if int(state["stale"].numpy()) >= train.patience:
                if rank == 0:
                    logger.info("early stopping after epoch %d: no validation gain for %d epochs", epoch + 1,
                                train.patience)
                break

    digest = weights_digest(model.variables)
    wrote = False
    if rank == 0:
        if Path(best_prefix + ".index").exists():
            tf.train.Checkpoint(model=model).read(best_prefix).expect_partial()
        artifact.export(model, spec, metrics={"epochs": metrics, "steps_per_rank": steps_done, "ranks": size,
                                              "best_valid_ndcg@50": float(state["best"].numpy()),
                                              "seconds": round(time.time() - started, 2)})
        wrote = True
    # A barrier: no rank returns before rank 0's artifact is complete.
    hvd.allreduce(tf.constant(0.0), name="export_done")
    return {"rank": rank, "size": size, "steps": steps_done, "loss": history[-1] if history else None,
            "epochs": metrics, "best_valid_ndcg": float(state["best"].numpy()), "pruned_after": pruned_after,
            "weights_digest": digest, "wrote_artifact": wrote}
