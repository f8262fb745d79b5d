"""WIDER FACE file formats (owned by the evaluation issue; see its module docstring once written)."""
