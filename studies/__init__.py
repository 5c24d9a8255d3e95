"""One-off measurements that decided a design choice, the tool that records a finished run, and the results report."""
