"""Car Sketch Classifier: one module per DVC stage, plus the shared pieces they use."""
