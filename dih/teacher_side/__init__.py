"""The frozen teacher side: the teacher and its heads run without autograd as an inference copy
(batch norm folded, optionally bf16), the precision rule that decides bf16, and the cohort cache of its
logits with the policy for when a stage reads it."""
