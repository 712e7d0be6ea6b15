fn main() {
    println!("ldl: placeholder");
}
