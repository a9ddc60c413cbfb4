"""What goes into the store and comes out for training: the datasets file, imports and generated
data, protocol splits, label embeddings, and the tensors a run reads."""
