"""The report: Markdown, figures and CSV tables built from records only, never measuring (``retina report``).

``sources`` finds and checks records, ``sections`` turns them into sections, ``figures`` draws, ``report`` writes
the page; ``ablation_table`` and ``speed`` build the ablation and speed tables that jobs also write on their own.
"""
