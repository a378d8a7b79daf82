"""The lab: tools around the method, not the method itself (they need the ``notebooks`` extra:
papermill, matplotlib, seaborn, ipywidgets).

* ``grids``: ablation grids (``glscl ablate``): grid files (``spec``), the run notebook shipped with
  the package and its interface (``notebook``; ``run.ipynb`` next to this file), parallel execution
  and the results table (``runner``), figures and findings (``figures``);
* ``bench``: the similarity-stage efficiency bench (``glscl bench``): comparison heads (``heads``),
  measuring tools (``measure``), cost model (``cost``), report and growth figure (``report``), the
  bench itself (``similarity``);
* ``ui``: plotting helpers of the tutorials (``viz``) and their interactive widgets.
"""
