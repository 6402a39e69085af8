/*
 * error.c - error codes, their names and texts (generated from
 * FAB_ERRNO_MAP), and the per-thread detail message of the last failure.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char fab__msg[256];
/* Set by fab__err_none: fab__msg is stale and fab_errmsg() answers "". */
_Thread_local uint8_t fab__msg_none __attribute__((tls_model("initial-exec")));

const char *fab_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
#define FAB__ERR_TEXT(name, val, text)                                           \
	case val:                                                                \
		return text;
		FAB_ERRNO_MAP(FAB__ERR_TEXT)
#undef FAB__ERR_TEXT
	default:
		return "unknown fab error code";
	}
}

const char *fab_errname(int code)
{
	switch (code) {
	case 0:
		return "FAB_OK";
#define FAB__ERR_NAME(name, val, text)                                           \
	case val:                                                                \
		return "FAB_" #name;
		FAB_ERRNO_MAP(FAB__ERR_NAME)
#undef FAB__ERR_NAME
	default:
		return "FAB_EUNKNOWN";
	}
}

const char *fab_errmsg(void)
{
	return fab__msg_none ? "" : fab__msg;
}

const char *fab_version(void)
{
#define FAB__STR2(x) #x
#define FAB__STR(x) FAB__STR2(x)
	return FAB__STR(FAB_VERSION_MAJOR) "." FAB__STR(FAB_VERSION_MINOR) "." FAB__STR(
		FAB_VERSION_PATCH);
}

int fab__err(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fab__msg_none = 0;
	vsnprintf(fab__msg, sizeof fab__msg, fmt, ap);
	va_end(ap);
	return code;
}

int fab__errno(const char *what)
{
	int e = errno;
	fab__msg_none = 0;
	snprintf(fab__msg, sizeof fab__msg, "%s: %s", what, strerror(e));
	errno = e;
	return FAB_ESYS;
}
