/*
 * A protobuf-c allocator that wipes on free. protobuf-c's free gets no size, so each block
 * keeps its size in a header. Use it to unpack messages that may hold values.
 */
#ifndef PCS_COMMON_PBWIPE_H
#define PCS_COMMON_PBWIPE_H

#include <protobuf-c/protobuf-c.h>

extern ProtobufCAllocator pbwipe_allocator;

#endif
