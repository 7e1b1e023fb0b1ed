"""One Horovod rank's training work, the same under every launcher.

Horovod's per-rank checklist: variables are broadcast from rank 0 after the
first step, gradients are averaged by ``DistributedGradientTape``, the learning
rate is scaled by the world size, the loss is averaged before anyone reads it,
and only rank 0 writes. Every rank runs exactly ``steps_per_epoch`` steps.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time

import numpy as np

logger = logging.getLogger(__name__)


class NonFiniteLoss(FloatingPointError):
    """The rank-averaged loss became NaN or infinite; training stops on every rank."""


def weights_digest(variables) -> str:
    """SHA-256 over every variable's bytes: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for variable in sorted(variables, key=lambda v: v.name):
        digest.update(variable.name.encode())
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


def train_rank(spec: dict) -> dict:
    """Train on this rank's shard and, on rank 0, export the artifact.

    ``spec`` is built on the driver by :func:`prismrec.training.launch.build_spec`:
    the resolved config as a dict, the data path, ``num_items``, ``log_q`` (list of
    floats, one per item index), ``steps_per_epoch`` and the artifact's ``model_dir``.
    Returns this rank's summary: steps run, final loss, weights digest, whether it wrote.
    """
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from prismrec.config import from_dict
    from prismrec.features.petastorm_io import sharded_batches
    from prismrec.models.losses import sample_negatives, sampled_softmax_loss
    from prismrec.models.towers import MultiInterestModel
    from prismrec.training import artifact

    hvd.init()
    cfg = from_dict(spec["config"])
    train, model_cfg = cfg.train, cfg.model
    try:
        tf.config.threading.set_intra_op_parallelism_threads(train.intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(train.inter_op_threads)
    except RuntimeError:
        # In a single-process run the driver may already have started TensorFlow.
        logger.info("TensorFlow already initialised; keeping its thread settings")
    tf.keras.utils.set_random_seed(train.seed)
    rank, size = hvd.rank(), hvd.size()

    model = MultiInterestModel(num_items=spec["num_items"], embedding_dim=model_cfg.embedding_dim,
                               num_interests=model_cfg.num_interests, max_hist_len=cfg.preprocess.max_hist_len,
                               hidden_dim=model_cfg.hidden_dim, encoder=model_cfg.encoder)
    optimizer = tf.keras.optimizers.Adam(learning_rate=train.learning_rate * size)
    log_q = tf.constant(spec["log_q"], dtype=tf.float32)

    @tf.function
    def train_step(batch):
        with tf.GradientTape() as tape:
            outputs = model({"hist_items": batch["hist_items"], "target_item": batch["target_item"]},
                            training=True)
            negatives = sample_negatives(log_q, train.num_negatives)
            loss = sampled_softmax_loss(outputs["user_vector"], batch["target_item"], model.item_table(),
                                        negatives, log_q, train.temperature)
        # Dense gradients: the item table is small enough that allreduce beats allgather of slices.
        tape = hvd.DistributedGradientTape(tape, sparse_as_dense=True)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    steps_per_epoch = int(spec["steps_per_epoch"])
    total_steps = steps_per_epoch * train.epochs
    steps_done, history, started = 0, [], time.time()
    with sharded_batches(spec["data_path"], rank, size, train.batch_size, train.seed) as batches:
        batch_iter = iter(batches)
        for epoch in range(train.epochs):
            losses = []
            for _ in range(steps_per_epoch):
                loss = train_step(next(batch_iter))
                if steps_done == 0:
                    # Rank 0's initial state wins on every rank (after step 1, when optimizer slots exist).
                    hvd.broadcast_variables(model.variables, root_rank=0)
                    opt_vars = optimizer.variables() if callable(optimizer.variables) else optimizer.variables
                    hvd.broadcast_variables(opt_vars, root_rank=0)
                steps_done += 1
                losses.append(loss)
            epoch_loss = float(hvd.allreduce(tf.reduce_mean(tf.stack(losses)), op=hvd.Average))
            if not math.isfinite(epoch_loss):
                raise NonFiniteLoss(f"rank-averaged loss is {epoch_loss} at epoch {epoch + 1}; "
                                    f"lower train.learning_rate or raise train.temperature")
            history.append(epoch_loss)
            if rank == 0:
                elapsed = time.time() - started
                eta = elapsed / steps_done * (total_steps - steps_done)
                logger.info("epoch %d/%d loss %.4f, %.0f examples/s, eta %.0fs", epoch + 1, train.epochs,
                            epoch_loss, steps_done * train.batch_size * size / elapsed, eta)

    wrote = False
    if rank == 0:
        artifact.export(model, spec, metrics={"loss_history": history, "steps_per_rank": steps_done,
                                              "ranks": size, "seconds": round(time.time() - started, 2)})
        wrote = True
    digest = weights_digest(model.variables)
    # A barrier: no rank returns before rank 0's artifact is complete.
    hvd.allreduce(tf.constant(0.0), name="export_done")
    return {"rank": rank, "size": size, "steps": steps_done, "loss": history[-1] if history else None,
            "weights_digest": digest, "wrote_artifact": wrote}
