"""The lab around the library: the run store, the job manager and the worker each job
runs, classroom admission, sweeps, the class set, the HTML report and the command line.
Never imports streamlit."""
