"""Wire formats of the media path, read and written without packet objects: RTP (the one reader
of RTP headers), RTCP, the VP8 payload descriptor and RID header extensions. No I/O."""
