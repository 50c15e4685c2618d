"""The report layer: a run folder's curves, tables, plots and report.md, from its trainings' metrics.

    rows      one row per finished training, read from the run folder (or handed over)
    matching  mean ± std over seeds, and the one rule that decides "matching"
    curve     curve.csv, curve_seeds.csv, curve.png and report.md of a run folder
    markdown  the tables of report.md
    plots     every figure: the Agg backend, the % remaining axis, atomic PNG files
"""
