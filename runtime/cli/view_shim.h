/* view_shim.h: the instance view the supervisor uses (runtime/gateway/view.h). */
#include "runtime/gateway/view.h"
