/*
 * Parley bridge: the per-receiver loop of RTP forwarding, in C.
 *
 * For each subscription a packet goes to: copy it, rewrite the RTP header the way the receiver
 * sees the stream (sequence number, timestamp, SSRC), SRTP-protect it with the receiver's libsrtp
 * session and send it from the bridge's one UDP socket; then record it in the subscription's sent
 * log (what a NACK for that outgoing sequence number refers to) and count it. Exactly what
 * ConferenceForwarder.handle_rtp does in Python (forwarder.py), which stays the reference: the
 * tests compare the two byte for byte.
 *
 * No allocation, no locks, no Python: every structure is owned by Python (cffi) and only read or
 * updated here. libsrtp is not linked: its srtp_protect is passed in as a function pointer (the
 * copy inside pylibsrtp, whose sessions these are).
 *
 * Build: python -m services.bridge.media.forwarding.native (gcc -O2 -shared -fPIC).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "native_fanout.h"

#define PARLEY_MAX_PACKET 1500 /* what the Python path accepts too (_SRTP_BUFFER - trailer) */
#define PARLEY_SRTP_TRAILER 148
#define PARLEY_NEVER_RESENT (-1e9)

/*
 * Forward `packet` (`length` bytes of decrypted RTP) to each of the `n` subscriptions.
 * `fallback[i]` is set to 1 for each subscription left to the Python path: payload rewrites,
 * receivers without SRTP or address, and every one from the first send that would block (the
 * socket buffer is full: Python queues it behind what the event loop already holds). A packet
 * libsrtp refuses is dropped for that receiver and not counted, as in Python.
 * `twcc_offset` >= 0: where the packet's transport-wide sequence number sits; each receiver with
 * a send history gets its own next number there, recorded with the send time and size
 * (draft-holmer-rmcat-transport-wide-cc-extensions-01; allocation/send_side_bwe.py).
 * Returns how many were left to Python.
 */
int parley_fanout(parley_protect_fn protect, const unsigned char *packet, int length,
                  struct parley_subscription **subscriptions, int n, unsigned char *fallback,
                  int twcc_offset)
{
    unsigned char buffer[PARLEY_MAX_PACKET + PARLEY_SRTP_TRAILER];
    int left = 0, blocked = 0;
    int64_t now_us = 0;

    if (twcc_offset > length - 2)
        twcc_offset = -1;
    if (twcc_offset >= 0) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        now_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    }

    if (length < 12 || length > PARLEY_MAX_PACKET) {
        memset(fallback, 1, (size_t)n);
        return n;
    }
    const uint32_t seq = ((uint32_t)packet[2] << 8) | packet[3];
    const uint32_t ts = ((uint32_t)packet[4] << 24) | ((uint32_t)packet[5] << 16) |
                        ((uint32_t)packet[6] << 8) | packet[7];

    for (int i = 0; i < n; i++) {
        struct parley_subscription *sub = subscriptions[i];
        struct parley_receiver *receiver = sub->receiver;
        fallback[i] = 0;
        if (blocked || sub->python_only || receiver->srtp == NULL || receiver->address_length == 0) {
            fallback[i] = 1;
            left++;
            continue;
        }
        memcpy(buffer, packet, (size_t)length);
        uint32_t out_seq = seq;
        if (sub->rewrite) {
            out_seq = (seq + sub->seq_delta) & 0xFFFF;
            uint32_t out_ts = ts + sub->ts_delta;
            uint32_t ssrc = sub->out_ssrc;
            buffer[2] = (unsigned char)(out_seq >> 8);
            buffer[3] = (unsigned char)out_seq;
            buffer[4] = (unsigned char)(out_ts >> 24);
            buffer[5] = (unsigned char)(out_ts >> 16);
            buffer[6] = (unsigned char)(out_ts >> 8);
            buffer[7] = (unsigned char)out_ts;
            buffer[8] = (unsigned char)(ssrc >> 24);
            buffer[9] = (unsigned char)(ssrc >> 16);
            buffer[10] = (unsigned char)(ssrc >> 8);
            buffer[11] = (unsigned char)ssrc;
        }
        int64_t *twcc = receiver->twcc_state;
        uint32_t twcc_seq = 0;
        if (twcc_offset >= 0 && twcc != NULL) {
            twcc_seq = (uint32_t)twcc[0] & 0xFFFF;
            buffer[twcc_offset] = (unsigned char)(twcc_seq >> 8);
            buffer[twcc_offset + 1] = (unsigned char)twcc_seq;
        }
        int size = length;
        if (protect(receiver->srtp, buffer, &size) != 0)
            continue;
        ssize_t sent = sendto(receiver->fd, buffer, (size_t)size, MSG_DONTWAIT,
                              (const struct sockaddr *)receiver->address,
                              (socklen_t)receiver->address_length);
        if (sent < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                blocked = 1;
                fallback[i] = 1;
                left++;
                continue;
            }
            receiver->send_errors++;
        }
        if (twcc_offset >= 0 && twcc != NULL) {
            uint32_t slot = twcc_seq & receiver->twcc_mask;
            receiver->twcc_seqs[slot] = twcc_seq;
            receiver->twcc_sent_us[slot] = now_us;
            receiver->twcc_sizes[slot] = length;
            twcc[0] = (twcc_seq + 1) & 0xFFFF;
            twcc[1]++;
        }
        uint32_t slot = out_seq & sub->sent_mask;
        sub->sent[slot] = ((int64_t)out_seq << 16) | seq;
        sub->resent[slot] = PARLEY_NEVER_RESENT;
        sub->packets++;
        sub->octets += length - 12;
    }
    return left;
}
