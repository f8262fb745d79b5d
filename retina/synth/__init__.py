"""SynthFace and SynthFace-ID: procedural face data written in the WIDER FACE and LFW layouts (synthetic data).

``config`` (SynthCfg, presets, difficulty), ``scene`` (backdrops, bodies, occluders, camera effects), ``face``
(rendering faces of the morphable model), ``image`` (one composed image and its annotations), ``splits``
(generating and caching a split), ``sheet`` (annotated contact sheets); ``identity_config`` and ``identities``
for SynthFace-ID (identities, LFW-framed images, pairs).
"""
