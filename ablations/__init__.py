"""The ablation suite: the paper's Table 3 ablations as data (:mod:`ablations.variants`) and one runner
(:mod:`ablations.run`) that trains, evaluates and records every (variant, seed) under identical conditions.

    nox -s ablation_landmarks        # landmark loss weight 0 vs 0.1, CPU setting on SynthFace
    nox -s ablation_dcn              # DCN off vs on
    python -m ablations.run dcn --setting paper --data-root WIDER/train --val-root WIDER/val --device cuda
"""
