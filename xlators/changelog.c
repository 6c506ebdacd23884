/*
 * changelog.c — pack/unpack of the replicate changelog matrix (changelog.h).
 *
 * The on-disk and on-wire form is KB_CL_ROWS x KB_CL_COLS big-endian int32,
 * row-major, 204 bytes; the host form is kb_cl_matrix_t. Both directions are
 * total: every 204-byte input decodes.
 */
#include "xlators/changelog.h"

void kb_cl_encode(const kb_cl_matrix_t *m, uint8_t out[KB_CL_MATRIX_BYTES])
{
    uint8_t *p = out;
    for (int r = 0; r < KB_CL_ROWS; r++)
        for (int c = 0; c < KB_CL_COLS; c++) {
            uint32_t v = (uint32_t)m->v[r][c];
            p[0] = (uint8_t)(v >> 24);
            p[1] = (uint8_t)(v >> 16);
            p[2] = (uint8_t)(v >> 8);
            p[3] = (uint8_t)v;
            p += 4;
        }
}

void kb_cl_decode(const uint8_t in[KB_CL_MATRIX_BYTES], kb_cl_matrix_t *m)
{
    const uint8_t *p = in;
    for (int r = 0; r < KB_CL_ROWS; r++)
        for (int c = 0; c < KB_CL_COLS; c++) {
            uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            m->v[r][c] = (int32_t)v;
            p += 4;
        }
}
