"""The committed weights (each beside its record ``<name>.json`` and training metrics).

- :data:`DEFAULT_WEIGHTS`: the detector, mobilenet0.25 trained on SynthFace (synthetic data only);
- :data:`DEFAULT_EMBEDDER`: the small ArcFace of the verification experiment, trained on SynthFace-ID;
- :data:`DEFAULT_DECODER`: the dense branch's mesh decoder, pre-trained on the morphable face space.
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_WEIGHTS = WEIGHTS_DIR / "mobilenet0.25_synthface.pth"
DEFAULT_EMBEDDER = WEIGHTS_DIR / "arcface_synthface_id.pth"
DEFAULT_DECODER = WEIGHTS_DIR / "mesh_decoder.pth"
