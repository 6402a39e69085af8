/* select.c - see the header comment once implemented. */
#include "internal.h"
