"""Ranking without Spark or Horovod: interests → merged top-N lists, the metrics, popularity.

Pure numpy and TensorFlow, imported by training (validation), scoring and evaluation alike:
``users`` is the loop over batches of users, ``recommend`` encodes and merges, ``topk`` is the
exact per-interest top-N, ``metrics`` the ranking metrics, ``popularity`` the baseline ranking.
"""
