"""Online machine learning on a real stream: shared logic for the job, the server and the tools."""
