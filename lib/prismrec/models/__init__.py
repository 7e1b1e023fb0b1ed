"""The multi-interest network: pure TensorFlow/Keras 2, no Spark or Horovod."""
