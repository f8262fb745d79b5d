"""Numbers of the RetinaFace paper (arXiv 1905.00641 v2) shown beside ours: facts read from the paper, never
measured here."""

from __future__ import annotations

from types import MappingProxyType

# arXiv 1905.00641 Table 3 (WIDER FACE val; AP in %, "mAP" = hard AP averaged over IoU 0.5:0.05:0.95), as
# read from the paper. Rows are cumulative: "+DCN" is FPN+Context with DCN, "+Lpts" adds the
# landmark loss on top of "+DCN" (the paper's text: landmarks raise hard AP by 0.408 = 91.694 - 91.286).
PAPER_SOURCE = "RetinaFace paper (arXiv 1905.00641) Table 3, WIDER FACE val"
PAPER_TABLE3: MappingProxyType[str, MappingProxyType[str, float]] = MappingProxyType(
    {
        row: MappingProxyType(dict(zip(("easy", "medium", "hard", "hard_map"), values, strict=True)))
        for row, values in {
            "FPN+Context": (95.532, 95.134, 90.714, 50.842),
            "+DCN": (96.349, 95.833, 91.286, 51.522),
            "+Lpts": (96.467, 96.075, 91.694, 52.297),
            "+Lpixel": (96.413, 95.864, 91.276, 51.492),
            "+Lpts +Lpixel": (96.942, 96.175, 91.857, 52.318),
        }.items()
    }
)

# The ablations of Table 3 that the suite runs (``ablations/variants.py`` defines them; a test keeps the two equal).
TABLE3_ABLATIONS = ("landmarks", "dcn", "mesh")
