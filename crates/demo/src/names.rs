//! Names for the demo town: villages, communities, departments, people. Made up for the demo.

use civicgrid_core::grid::WorkstationKind;

const VILLAGES: [&str; 24] = [
    "赵巷",
    "姜杭",
    "周家浜",
    "南港",
    "大直",
    "尚明甸",
    "金华",
    "新龙",
    "港浦",
    "南庄",
    "北胜",
    "田肚",
    "湖滨",
    "荡东",
    "方家",
    "花木桥",
    "泾东",
    "石浦",
    "汤庄",
    "金茂",
    "永乐",
    "横泾",
    "蔡家",
    "沈塘",
];
const COMMUNITIES: [&str; 12] =
    ["新镇", "鑫港", "锦绣", "金浦", "海棠", "彩虹", "繁华", "星河", "荷花", "翠园", "澄湖", "朝阳"];
const SURNAMES: [&str; 20] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "林", "高",
    "沈",
];
const GIVEN: [&str; 20] = [
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "涛", "明", "超", "霞", "平", "刚", "桂英", "建华",
    "晓东", "丽",
];

/// Whether workstation `i` of `n` is an urban community (about a third, the first ones: the centre).
pub fn is_community(i: usize, n: usize) -> bool {
    i < n.div_ceil(3)
}

/// The name of workstation `i`.
pub fn workstation(i: usize, kind: WorkstationKind) -> String {
    match kind {
        WorkstationKind::Community => {
            let base = COMMUNITIES[i % COMMUNITIES.len()];
            let round = i / COMMUNITIES.len();
            if round == 0 { format!("{base}社区") } else { format!("{base}{}社区", round + 1) }
        }
        WorkstationKind::Village => {
            let base = VILLAGES[i % VILLAGES.len()];
            let round = i / VILLAGES.len();
            if round == 0 { format!("{base}村") } else { format!("{base}{}村", round + 1) }
        }
    }
}

/// A person's name, deterministic in `i`.
pub fn person(i: usize) -> String {
    format!("{}{}", SURNAMES[i % SURNAMES.len()], GIVEN[(i / SURNAMES.len() + i * 7) % GIVEN.len()])
}

/// Departments: (code, 中文名, English name, parent code). Sub-units make the tree visible.
pub const DEPARTMENTS: [(&str, &str, &str, Option<&str>); 19] = [
    ("chengguan", "综合执法局（城管）", "Urban management", None),
    ("chengguan-1", "城管执法一中队", "Urban management squad 1", Some("chengguan")),
    ("chengguan-2", "城管执法二中队", "Urban management squad 2", Some("chengguan")),
    ("huanwei", "环卫所", "Sanitation", None),
    ("shizheng", "市政管理所", "Municipal works", None),
    ("shizheng-lamp", "路灯管理站", "Street-lighting station", Some("shizheng")),
    ("shuiwu", "水务站", "Water", None),
    ("gongdian", "供电所", "Power supply", None),
    ("jiaotong", "交通管理所", "Transport", None),
    ("police", "派出所", "Police station", None),
    ("market", "市场监管分局", "Market regulation", None),
    ("emergency", "应急管理办", "Emergency management", None),
    ("agri", "农业农村办", "Agriculture and rural affairs", None),
    ("civil", "民政办", "Civil affairs", None),
    ("health", "卫生健康办", "Health", None),
    ("fire", "消防救援站", "Fire and rescue", None),
    ("housing", "建设管理所", "Construction", None),
    ("eco", "生态环境办", "Ecology and environment", None),
    ("iot-maint", "物联网运维服务商", "IoT maintenance contractor", None),
];
