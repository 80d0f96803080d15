"""The dashboard's figures and tables as pure functions: runs, metric frames and
configs in, Plotly figures and pandas frames out. No streamlit (tests/test_layers.py
checks), so every chart is tested without a browser and could serve a notebook."""
