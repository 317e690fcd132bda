package serving

import (
	"context"
	"fmt"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/proxy"
)

// AllUsers is the group every key belongs to, as in Databricks.
const AllUsers = "users"

// rank orders permission levels; 0 is none.
func rank(level string) int {
	switch level {
	case CanView:
		return 1
	case CanQuery:
		return 2
	case CanManage:
		return 3
	}
	return 0
}

// level is k's permission on an API-created endpoint: CAN_MANAGE for
// admins and the creator, else the highest the access control list gives
// the key (user_name or service_principal_name = key id) or its team
// (group_name; "users" is every key). "" when none.
func level(k *sluice.Key, creator string, acl []AccessControl) string {
	if k == nil {
		return ""
	}
	if k.Admin || (creator != "" && k.ID == creator) {
		return CanManage
	}
	best := ""
	for _, a := range acl {
		match := (a.UserName != "" && a.UserName == k.ID) ||
			(a.ServicePrincipalName != "" && a.ServicePrincipalName == k.ID) ||
			(a.GroupName != "" && (a.GroupName == AllUsers || (k.Team != "" && a.GroupName == k.Team)))
		if match && rank(a.PermissionLevel) > rank(best) {
			best = a.PermissionLevel
		}
	}
	return best
}

// need refuses k unless it holds at least want on the endpoint.
func need(k *sluice.Key, have, want, endpoint string) error {
	if rank(have) >= rank(want) {
		return nil
	}
	return apierr.Forbidden(apierr.DBPermissionDenied, "Key '%s' does not have %s permission on serving endpoint '%s'.", k.ID, want, endpoint)
}

// checkACL validates an access control list from PUT or PATCH.
func checkACL(acl []AccessControl) error {
	var p problems
	for i, a := range acl {
		f := fmt.Sprintf("access_control_list[%d]", i)
		n := 0
		for _, s := range []string{a.GroupName, a.ServicePrincipalName, a.UserName} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			p.add(f, "name exactly one of group_name (a team), service_principal_name or user_name (a key id)")
		}
		if rank(a.PermissionLevel) == 0 {
			p.add(f+".permission_level", "%q is not CAN_VIEW, CAN_QUERY or CAN_MANAGE", a.PermissionLevel)
		}
	}
	return p.err()
}

func samePrincipal(a, b AccessControl) bool {
	return a.GroupName == b.GroupName && a.ServicePrincipalName == b.ServicePrincipalName && a.UserName == b.UserName
}

// mergeACL sets each principal of add to its given level, keeping the
// others (PATCH).
func mergeACL(acl, add []AccessControl) []AccessControl {
	out := append([]AccessControl(nil), acl...)
next:
	for _, a := range add {
		for i := range out {
			if samePrincipal(out[i], a) {
				out[i].PermissionLevel = a.PermissionLevel
				continue next
			}
		}
		out = append(out, a)
	}
	return out
}

// renderPermissions is the ServingEndpointPermissions of an endpoint:
// admins (inherited), the creator and the explicit entries.
func renderPermissions(id, creator string, acl []AccessControl) permissions {
	p := permissions{ObjectID: "/serving-endpoints/" + id, ObjectType: "serving-endpoint"}
	p.AccessControlList = append(p.AccessControlList, aclResponse{GroupName: "admins",
		AllPermissions: []permission{{PermissionLevel: CanManage, Inherited: true, InheritedFromObject: []string{"/serving-endpoints/"}}}})
	if creator != "" {
		p.AccessControlList = append(p.AccessControlList, aclResponse{UserName: creator,
			AllPermissions: []permission{{PermissionLevel: CanManage}}})
	}
	for _, a := range acl {
		perm := permission{PermissionLevel: a.PermissionLevel}
		merged := false
		for i := range p.AccessControlList {
			r := &p.AccessControlList[i]
			if r.GroupName == a.GroupName && r.ServicePrincipalName == a.ServicePrincipalName && r.UserName == a.UserName {
				r.AllPermissions = append(r.AllPermissions, perm)
				merged = true
				break
			}
		}
		if !merged {
			p.AccessControlList = append(p.AccessControlList, aclResponse{GroupName: a.GroupName,
				ServicePrincipalName: a.ServicePrincipalName, UserName: a.UserName, AllPermissions: []permission{perm}})
		}
	}
	return p
}

var levelDescriptions = permissionLevels{PermissionLevels: []levelDescription{
	{CanView, "Can view the endpoint's settings"},
	{CanQuery, "Can query the endpoint"},
	{CanManage, "Can change, delete and grant permissions on the endpoint"},
}}

// Admitter refuses data-plane calls to API-created endpoints from keys
// without CAN_QUERY on them (403). Endpoints of the configuration file are
// not checked here: keys' endpoint lists govern them.
func (m *Manager) Admitter() proxy.Admitter { return admitter{m} }

type admitter struct{ m *Manager }

var _ proxy.Admitter = admitter{}

func (a admitter) Admit(_ context.Context, adm *proxy.Admission) (func(*sluice.UsageRecord), error) {
	e := (*a.m.access.Load())[adm.Endpoint.Name]
	if e == nil {
		return nil, nil
	}
	if rank(level(adm.Key, e.rec.Creator, e.sp.ACL)) >= rank(CanQuery) {
		return nil, nil
	}
	id := ""
	if adm.Key != nil {
		id = adm.Key.ID
	}
	return nil, apierr.Forbidden("permission_denied", "Key '%s' does not have CAN_QUERY permission on serving endpoint '%s'.", id, adm.Endpoint.Name)
}
