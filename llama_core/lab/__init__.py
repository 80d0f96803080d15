"""The lab around the library: run store, jobs, classroom, sweeps, class set,
report and the command line. Never imports streamlit."""
