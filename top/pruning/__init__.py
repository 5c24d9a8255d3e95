"""ToP token pruning: hard-concrete masks, the ranking-distillation loss and the MACs model."""
