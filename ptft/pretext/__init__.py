"""Parts that live only during pretraining and are dropped at hand-off."""
