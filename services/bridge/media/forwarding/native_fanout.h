/*
 * Parley bridge: the structures and the function the C forwarding loop (native_fanout.c) shares
 * with Python. This file is the one declaration of both sides: native_fanout.c includes it, and
 * services/bridge/media/forwarding/native.py hands it to cffi's cdef (which reads C declarations and
 * comments; native.py drops the preprocessor lines first), so the two can never disagree.
 * Every structure is allocated and owned by Python (cffi); C only reads and updates it.
 */
#ifndef PARLEY_NATIVE_FANOUT_H
#define PARLEY_NATIVE_FANOUT_H

#include <stdint.h>

typedef int (*parley_protect_fn)(void *session, void *packet, int *length);

struct parley_receiver {
    void *srtp;                 /* libsrtp session for what is sent to it, NULL: not connected */
    int fd;                     /* the bridge's UDP socket */
    int address_length;         /* 0: no address selected yet */
    unsigned char address[28];  /* struct sockaddr_in or sockaddr_in6 */
    int64_t send_errors;        /* sendto failures other than a full socket buffer */
    /* transport-cc send history (allocation/send_side_bwe.py SendHistory), NULL: not numbered */
    int64_t *twcc_state;        /* [next transport-wide sequence number, packets recorded] */
    int64_t *twcc_seqs;         /* per slot: its sequence number, -1 empty */
    int64_t *twcc_sent_us;      /* per slot: send time, CLOCK_MONOTONIC microseconds */
    int64_t *twcc_sizes;        /* per slot: bytes */
    uint32_t twcc_mask;         /* slots - 1 (a power of two) */
};

struct parley_subscription {
    struct parley_receiver *receiver;
    int64_t *sent;              /* sent log: (out_seq << 16) | seq per slot, -1 empty */
    double *resent;             /* when each slot's packet was last resent */
    uint32_t sent_mask;         /* slots - 1 (a power of two) */
    uint32_t out_ssrc;
    uint32_t seq_delta;         /* added mod 2^16 */
    uint32_t ts_delta;          /* added mod 2^32 */
    int32_t rewrite;            /* the header changes on the way */
    int32_t python_only;        /* the payload changes too (VP8 picture ids): Python sends it */
    int64_t packets;
    int64_t octets;             /* RTP payload bytes (packet - 12) */
};

/* Forward `packet` to each of the `n` subscriptions; see native_fanout.c. */
int parley_fanout(parley_protect_fn protect, const unsigned char *packet, int length,
                  struct parley_subscription **subscriptions, int n, unsigned char *fallback,
                  int twcc_offset);

#endif
