"""Raw logs → canonical events, vocabularies and Petastorm training data (Spark).

``stage`` runs it; ``sources`` and ``catalogue`` read the inputs, ``validate`` and ``records``
account for every record, ``sequences`` and ``split`` build the users' sequences under the
evaluation protocol, and ``petastorm_io`` writes and reads the training data. Nothing is
imported here, so the trainer's ranks can read the training data without loading Spark.
"""
