"""Car Sketch Classifier: the library behind the DVC stages and the `carsketch` command line."""
