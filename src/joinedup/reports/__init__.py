"""Reports: what the population health and finance runs mean, as pages a person reads.

The same builders feed the self-contained HTML reports (`joinedup phm report`, `joinedup
finance report`) and the dashboard (`joinedup serve`), so the two always show the same figures.
Charts are matplotlib SVG with a text description and a table alternative beside each.
"""
