"""`coupons revoke`: revoke any number of codes from a file through the HTTP API.

codes_file  read the file, plan every line (send, duplicate, invalid) with the domain's rules
journal     numbered batches of 50, their idempotency keys, what a rerun resumes from
calls       the HTTP requests of one batch
results     outcomes, the result CSV in file order, the counts and exit status
ui          progress bar and summary
command     the command's options and the run
"""
