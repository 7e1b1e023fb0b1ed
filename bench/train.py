"""Training throughput: Keras ``fit`` on in-memory arrays vs the Petastorm + Horovod path.

Same model, batch size and data (the preprocessed training examples of --conf):

- a: Keras ``fit`` on in-memory numpy arrays, one process (the ceiling);
- b: ``prismrec`` training, Petastorm reader + Horovod, ``horovodrun -np 1``;
- c: the same with ``horovodrun -np 2``.

Examples/s are medians over epochs after the first (warm-up: tracing, reader start).
Prints the ratios b/a and c/a (target b ≥ 0.8 × a).

    .venv/bin/python bench/train.py [--conf conf/local.yaml] [--epochs 4] [--set k=v ...]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np


def keras_fit_ceiling(cfg, epochs: int, threads: int) -> float:
    """Examples/s of Keras ``fit`` with the prismrec model's own loss on in-memory arrays."""
    import pandas as pd
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from prismrec.layout import Layout
    from prismrec.models import build_model
    from prismrec.preprocess.petastorm_io import examples as cut_examples
    from prismrec.training.launch import build_spec

    spec = build_spec(cfg, model_id="bench-fit")
    examples = cut_examples(pd.read_parquet(Layout.of(cfg).table("train_sequences")), cfg.preprocess.max_hist_len)
    arrays = {"hist_items": np.stack(examples["hist_items"].to_numpy()).astype(np.int32),
              "target_item": examples["target_item"].to_numpy().astype(np.int32)}
    model = build_model(cfg.model, spec["num_items"], cfg.preprocess.max_hist_len,
                        np.asarray(spec["item_category_idx"]), np.asarray(spec["item_counts"]))
    log_q = tf.constant(spec["log_q"], tf.float32)
    train = cfg.train

    class Fit(tf.keras.Model):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def train_step(self, batch):
            with tf.GradientTape() as tape:
                loss = self.inner.training_loss(batch, log_q, train.num_negatives, train.temperature)
            variables = self.inner.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return {"loss": loss}

    class EpochTimer(tf.keras.callbacks.Callback):
        seconds: list = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            EpochTimer.seconds.append(time.perf_counter() - self.started)

    fit = Fit(model)
    fit.compile(optimizer=tf.keras.optimizers.Adam(train.learning_rate))
    data = (tf.data.Dataset.from_tensor_slices(arrays).shuffle(8192, seed=train.seed)
            .batch(train.batch_size, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE))
    fit.fit(data, epochs=epochs, steps_per_epoch=spec["steps_per_epoch"], verbose=0, callbacks=[EpochTimer()])
    per_epoch = spec["steps_per_epoch"] * train.batch_size
    return statistics.median(per_epoch / s for s in EpochTimer.seconds[1:])


def horovod_path(conf: str, overrides: list[str], ranks: int, epochs: int, threads: int) -> float:
    """Examples/s of ``prismrec train`` under horovodrun with ``ranks`` processes."""
    code = (
        "import json, sys\n"
        "from prismrec.cli import configure_logging\n"
        "from prismrec.config import load_config\n"
        "from prismrec.training.launch import run\n"
        "configure_logging('WARNING')\n"
        f"cfg = load_config({conf!r}, {overrides!r} + ['train.launcher=horovodrun', 'train.num_proc={ranks}',"
        f" 'train.epochs={epochs}', 'train.patience={epochs}', 'train.intra_op_threads={threads}'])\n"
        f"report = run(None, cfg, model_id='bench-hvd-{ranks}')\n"
        "print('RESULT ' + json.dumps([e.examples_per_second for e in report.epochs]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"horovod run with {ranks} ranks failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return statistics.median(json.loads(lines[0][7:])[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default="conf/local.yaml")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    from prismrec.config import load_config

    cfg = load_config(args.conf, args.overrides)
    cores = 2
    b = horovod_path(args.conf, args.overrides, 1, args.epochs, threads=cores)
    c = horovod_path(args.conf, args.overrides, 2, args.epochs, threads=cores // 2)
    a = keras_fit_ceiling(cfg, args.epochs, threads=cores)
    print(f"model {cfg.model.encoder}, batch {cfg.train.batch_size} per rank, {args.epochs} epochs (first excluded)")
    print(f"a  keras fit, in-memory, 1 process      : {a:10,.0f} examples/s")
    print(f"b  petastorm + horovod, 1 process       : {b:10,.0f} examples/s   b/a = {b / a:.2f}  (target >= 0.80)")
    print(f"c  petastorm + horovod, 2 processes     : {c:10,.0f} examples/s   c/a = {c / a:.2f}, c/b = {c / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
