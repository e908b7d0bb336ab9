"""One conference's packet path: the forwarder and its streams and subscriptions, each
receiver's forwarding mapping and simulcast projection, NACK/RTX, RTCP termination, the C
per-receiver loop, and the policy seam the conference intelligence fills."""
