"""What the dashboard's pages share: the process-wide job manager, run pickers, and
plotly figure builders. Pages stay thin; llama_core stays free of streamlit."""
