"""The foundation every layer reads: errors, text cleaning, output-folder rules, the metric registry, safe data
unpickling and the flow quantities. It imports nothing from the harness (and no torch at import time, except
`flow`)."""
