"""ALPRO's prompt entity modeling (PEM): Li et al., *Align and Prompt* (CVPR 2022, arXiv 2112.09583).

**PEM** (``PromptEntityModeling``). Entity pseudo-labels from a frozen prompter, predicted by the
model from its own patch tokens:

1. entities: the M most frequent nouns of the training captions (``mine_entities``; a small
   rule-based tagger, no model download);
2. prompts: each entity in an ensemble of templates ("A video of a {}.", ...); the unit-norm text
   embeddings of its prompts are averaged and re-normalised: e_m = normalize(mean_j normalize(f(p_jm)))
   (the release averages without re-normalising);
3. a random box on the patch grid covering 30-50 % of the frame, the same for every frame of a
   clip; the prompter sees the clip with the pixels outside the box zeroed (black);
4. soft pseudo-labels from the prompter: c = normalize(mean over real frames of normalize(g(crop_f))),
   q = softmax(c . e / tau); a sample is dropped when max_m q_m < 0.2 (``pseudo_labels``);
5. the model's patch tokens (the same forward pass as retrieval) pooled inside the box, mean over
   the box's patches and the real frames, into an MLP (Linear d -> 2d, ReLU, Linear 2d -> M, as ALPRO);
6. L_PEM = mean over kept samples of -sum_m q_m log softmax(logits)_m (soft cross-entropy).

The released code has two quirks documented where they matter: its drop rule compares the argmax
*index* of the similarities with 0.2 (``confidence_rule='released'`` reproduces it), and its box is
drawn with area share in [0.3, 0.5] and *then* snapped down to the patch grid, so real boxes often
cover less than 30 %. Here the box is drawn among the grid-aligned boxes whose area share lies in
the range, so the 30-50 % promise holds. ALPRO pools the patch outputs of its fusion encoder (text
and video jointly); a dual encoder has none, so the visual encoder's own patch tokens are pooled.
"""
from glscl.pem.entities import TEMPLATES, entity_prompts, mine_entities
from glscl.pem.modeling import (
    EntityHead,
    PromptEntityModeling,
    Prompter,
    box_patch_mask,
    box_sizes,
    build_pem,
    build_prompter,
    crop_to_box,
    pool_box,
    pseudo_labels,
    sample_boxes,
    soft_cross_entropy,
)

__all__ = ["TEMPLATES", "entity_prompts", "mine_entities", "EntityHead", "Prompter", "PromptEntityModeling",
           "box_patch_mask", "box_sizes", "build_pem", "build_prompter", "crop_to_box", "pool_box", "pseudo_labels",
           "sample_boxes", "soft_cross_entropy"]
